"""Scoring a bench's hypotheses, with sacrebleu's own metrics and tests: corpus BLEU and chrF, paired
bootstrap resampling between two systems (`sacrebleu --paired-bs`), sentence-level chrF, and the
per-sentence checks a reviewer asks for (output cut at the length limit, loops, source copies).
"""
import statistics

import numpy as np
from sacrebleu import significance
from sacrebleu.metrics import BLEU, CHRF

BOOTSTRAP_SAMPLES = 1000  # sacrebleu --paired-bs's default
LOOP_NGRAM, LOOP_COUNT = 4, 3  # a hypothesis loops when one word 4-gram occurs 3 or more times in it
COPY_CHRF = 90  # a hypothesis copies its source when chrF(hypothesis, source) >= 90 (identical: 100)


class Scorer:
    """BLEU and chrF (chrF2) against the same references, as sacrebleu computes them. `references`: one
    list of lines per reference set (several for multi-reference test sets)."""

    def __init__(self, references, tokenize="13a", lowercase=False):
        self.references, self.tokenize, self.lowercase = references, tokenize, lowercase
        self.signatures = {}  # {'bleu', 'chrf'}: sacrebleu's, known once a corpus is scored

    def metrics(self):
        """Fresh metric objects: sacrebleu's cache references inside them."""
        return {"bleu": BLEU(tokenize=self.tokenize, lowercase=self.lowercase), "chrf": CHRF(lowercase=self.lowercase)}

    def corpus(self, hypotheses):
        """{'bleu', 'chrf', 'length_ratio'}: the ratio as BLEU's brevity penalty sees it (hypothesis words
        over the closest reference's, corpus-level, sacrebleu's tokenization)."""
        metrics = self.metrics()
        bleu = metrics["bleu"].corpus_score(hypotheses, self.references)
        chrf = metrics["chrf"].corpus_score(hypotheses, self.references)
        self.signatures = {name: str(metric.get_signature()) for name, metric in metrics.items()}
        return {"bleu": bleu.score, "chrf": chrf.score, "length_ratio": bleu.sys_len / bleu.ref_len}

    def sentence_chrf(self, hypotheses):
        chrf = self.metrics()["chrf"]
        return [chrf.sentence_score(h, [refs[i] for refs in self.references]).score for i, h in enumerate(hypotheses)]

    def paired_bootstrap(self, baseline, system, n_samples=BOOTSTRAP_SAMPLES):
        """sacrebleu's paired bootstrap resampling of `system` against `baseline` (what `sacrebleu REF -i
        BASELINE SYSTEM --paired-bs` prints): per metric {'difference': system - baseline, 'p', 'ci': the
        95% interval of the difference}. The interval comes from the test's own resamples: sacrebleu draws
        them from its fixed seed (SACREBLEU_SEED, default 12345) for every system alike, so resampling each
        system's statistics again pairs them; its estimate_ci gives mean +- half the 2.5-97.5% range.
        Identical outputs get p = 1 (sacrebleu's count of larger differences would give 1/(n+1))."""
        metrics = self.metrics()
        if list(baseline) == list(system):  # nothing differs: sacrebleu's count would give p = 1/(n+1)
            return {name: {"difference": 0.0, "p": 1.0, "ci": [0.0, 0.0], "system_bootstrap_mean": None}
                    for name in metrics}
        _, results = significance.PairedTest([("baseline", baseline), ("system", system)], metrics,
                                             self.references, test_type="bs", n_samples=n_samples)()
        keys = [k for k in results if k != "System"]  # sacrebleu's names (BLEU, chrF2), in the order given
        paired = {}
        for key, (name, metric) in zip(keys, metrics.items()):
            base, sys = results[key]
            resampled = [np.array([s.score for s in significance._bootstrap_resample(
                metric._extract_corpus_statistics(hyps, self.references), metric, n_samples)[1]])
                for hyps in (baseline, system)]
            mean, half = significance.estimate_ci(resampled[1] - resampled[0])
            paired[name] = {"difference": sys.score - base.score, "p": sys.p_value,
                            "ci": [float(mean - half), float(mean + half)], "system_bootstrap_mean": sys.mean}
        return paired


def seed_pairs(n_system, n_baseline):
    """Seed i of the system against seed i of the baseline; a single-seed side against every seed of the
    other; otherwise the first min(n) seeds of each."""
    n = max(n_system, n_baseline) if min(n_system, n_baseline) == 1 else min(n_system, n_baseline)
    return [(i % n_system, i % n_baseline) for i in range(n)]


def compare(scorer, system, baseline, n_samples=BOOTSTRAP_SAMPLES):
    """Paired bootstrap of each seed pair (`system`, `baseline`: hypothesis lists per seed). Per metric:
    the differences' mean and standard deviation over the pairs (None for one pair), and the largest p
    with that pair's interval: the weakest of the seeds' evidence is what the table shows."""
    pairs = seed_pairs(len(system), len(baseline))
    tests = [scorer.paired_bootstrap(baseline[j], system[i], n_samples) for i, j in pairs]
    out = {"seed_pairs": [[i + 1, j + 1] for i, j in pairs]}
    for name in tests[0]:
        runs = [t[name] for t in tests]
        diffs = [r["difference"] for r in runs]
        weakest = max(runs, key=lambda r: r["p"])
        out[name] = {"difference": statistics.mean(diffs), "sd": statistics.stdev(diffs) if len(diffs) > 1 else None,
                     "ci": weakest["ci"], "p": weakest["p"],
                     "per_seed": [{k: r[k] for k in ("difference", "ci", "p")} for r in runs]}
    return out


def loops(hypothesis):
    """Whether some word n-gram (LOOP_NGRAM words) occurs LOOP_COUNT or more times."""
    words = hypothesis.split()
    grams = [tuple(words[i:i + LOOP_NGRAM]) for i in range(len(words) - LOOP_NGRAM + 1)]
    return any(grams.count(g) >= LOOP_COUNT for g in set(grams))


def checks(hypotheses, lengths, limits, sources, length_ratio):
    """Shares of the outputs that stop at their length limit (`lengths`: output tokens without </s>;
    `limits`: each sentence's int(a * longest source of its batch, </s> included, + b)), that loop, that
    copy their source (chrF(hypothesis, source) >= COPY_CHRF); and the corpus length ratio."""
    chrf = CHRF()
    n = len(hypotheses)
    return {"at_length_limit": sum(length >= limit for length, limit in zip(lengths, limits)) / n,
            "loops": sum(map(loops, hypotheses)) / n,
            "copies_source": sum(chrf.sentence_score(h, [s]).score >= COPY_CHRF
                                 for h, s in zip(hypotheses, sources)) / n,
            "length_ratio": length_ratio}


def losses(sentence_chrf, baseline, focus, n=5):
    """The `n` sentence ids where `focus` loses most against `baseline` by sentence chrF, worst first
    (only those where it loses)."""
    drop = [(sentence_chrf[baseline][i] - sentence_chrf[focus][i], i) for i in range(len(sentence_chrf[focus]))]
    return [i for d, i in sorted(drop, key=lambda x: (-x[0], x[1]))[:n] if d > 0]


def write_sentences(path, sources, references, hypotheses, sentence_chrf):
    """sentences.tsv: id, source, reference (the first), then each model's hypothesis and sentence chrF."""
    def cell(text):
        return " ".join(str(text).split())  # no tab or newline inside a field

    names = list(hypotheses)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(["id", "source", "reference"] + [c for m in names for c in (m, f"{m} chrF")]) + "\n")
        for i, (src, ref) in enumerate(zip(sources, references)):
            row = [i, src, ref] + [c for m in names for c in (hypotheses[m][i], f"{sentence_chrf[m][i]:.1f}")]
            f.write("\t".join(map(cell, row)) + "\n")


def _mean_sd(values):
    return round(statistics.mean(values), 2), round(statistics.stdev(values), 2) if len(values) > 1 else None


def _row(name, paths, seeds, timed, size, engine, scorer, limits, sources):
    """One model's row: BLEU and chrF over its seeds (`seeds`: a Decoded each), speed over `timed`."""
    scores = [scorer.corpus(d.hypotheses) for d in seeds]
    bleu, bleu_sd = _mean_sd([s["bleu"] for s in scores])
    chrf, chrf_sd = _mean_sd([s["chrf"] for s in scores])
    first = seeds[0]
    return {"name": name, "path": paths[0], "engine": engine, "params": size[0], "weights_bytes": size[1],
            "weights_mb": round(size[1] / 2 ** 20, 2),
            "bleu": bleu, "bleu_sd": bleu_sd, "chrf": chrf, "chrf_sd": chrf_sd,
            "seeds": [{"path": p, "bleu": round(s["bleu"], 2), "chrf": round(s["chrf"], 2)}
                      for p, s in zip(paths, scores)],
            "sentences_per_s": statistics.median(d.sentences_per_s for d in timed),
            "tokens_per_s": statistics.median(d.tokens_per_s for d in timed),
            "runs": [{"sentences_per_s": d.sentences_per_s, "tokens_per_s": d.tokens_per_s, "warmup_s": d.warmup_s,
                      "first_batch_cost_s": d.first_batch_cost_s} for d in timed],
            "checks": checks(first.hypotheses, first.lengths, limits, sources, scores[0]["length_ratio"])}


def score_bench(models, seeds, timed, sizes, engines, test, scorer, limits, compares=(), focus=None):
    """The bench's report without its settings, the detokenized sources, and {name: sentence chrF}.

    `models`: {name: [path per seed]}; `seeds`: {name: [Decoded per seed]}; `timed`: {name: [timed
    Decoded]}; `sizes`: {name: (params, bytes)}; `engines`: {name: 'fairseq' or 'ctranslate2'};
    `limits`: each sentence's output limit. Every model is tested against the first, and the `compares`
    (row, baseline) pairs; `focus` (default: the last fairseq row) is the row whose worst sentences
    against the first, by sentence chrF, are shown."""
    names = list(models)
    sources = [test.detok(s) for s in test.sources]
    rows = [_row(n, models[n], seeds[n], timed[n], sizes[n], engines[n], scorer, limits, sources) for n in names]
    ref = rows[0]
    for row in rows:
        row["speedup"] = round(row["sentences_per_s"] / ref["sentences_per_s"], 2)
        row["size_ratio"] = round(row["params"] / ref["params"], 2) if row["params"] and ref["params"] else None
        row["bleu_vs_first"] = round(row["bleu"] - ref["bleu"], 2)
        row["chrf_vs_first"] = round(row["chrf"] - ref["chrf"], 2)
    pairs = [(name, names[0]) for name in names[1:]]
    pairs += [pair for pair in compares if pair not in pairs]
    hyps = {name: [d.hypotheses for d in seeds[name]] for name in names}
    significance = [{"model": a, "baseline": b, **compare(scorer, hyps[a], hyps[b])} for a, b in pairs]
    sentence_chrf = {name: scorer.sentence_chrf(hyps[name][0]) for name in names}
    focus = focus or next((n for n in reversed(names) if engines[n] == "fairseq"), names[-1])
    worst = losses(sentence_chrf, names[0], focus) if focus != names[0] else []
    shown = [{"id": i, "source": sources[i], "reference": scorer.references[0][i],
              "baseline": hyps[names[0]][0][i], "model": hyps[focus][0][i],
              "chrf_baseline": sentence_chrf[names[0]][i], "chrf_model": sentence_chrf[focus][i]} for i in worst]
    return ({"models": rows, "significance": significance,
             "focus": {"model": focus, "baseline": names[0], "sentences": shown}}, sources, sentence_chrf)


def average_over_pairs(reports):
    """Each row's BLEU, chrF and speed-up averaged over the pairs (each pair's BLEU, chrF: the seeds' mean)."""
    first = next(iter(reports.values()))["models"]
    rows = []
    for k, m in enumerate(first):
        per_pair = [r["models"][k] for r in reports.values()]
        rows.append({"name": m["name"], **{key: round(sum(p[key] for p in per_pair) / len(per_pair), 2)
                                           for key in ("bleu", "chrf", "bleu_vs_first", "chrf_vs_first", "speedup")}})
    return rows
