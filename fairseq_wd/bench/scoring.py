"""Scoring a bench's hypotheses, with sacrebleu's own metrics and tests: corpus BLEU and chrF, a paired
bootstrap between two systems whose p is `sacrebleu --paired-bs`'s and whose interval is that of the
difference, sentence-level chrF, and the per-sentence checks a reviewer asks for (output cut at the length
limit, loops, source copies).
"""
import statistics

import numpy as np
from sacrebleu.metrics import BLEU, CHRF

BOOTSTRAP_SAMPLES = 1000  # sacrebleu --paired-bs's default
# The resampled sentence ids are drawn as sacrebleu's paired bootstrap draws them under its default seed
# (np.random.default_rng(12345).choice), and from this seed whatever SACREBLEU_SEED says: the same draws
# for every pair, every run, and `sacrebleu --paired-bs` run without SACREBLEU_SEED.
BOOTSTRAP_SEED = 12345
LOOP_NGRAM, LOOP_COUNT = 4, 3  # a hypothesis loops when one word 4-gram occurs 3 or more times in it
COPY_CHRF = 90  # a hypothesis copies its source when chrF(hypothesis, source) >= 90 (identical: 100)


def bootstrap_draws(n_sentences, n_samples=BOOTSTRAP_SAMPLES):
    """The resamples: an (n_samples, n_sentences) array of sentence ids drawn with replacement, the same
    for a given size on every call, as sacrebleu's `_paired_bs_test` draws them with its default seed."""
    return np.random.default_rng(BOOTSTRAP_SEED).choice(n_sentences, size=(n_samples, n_sentences), replace=True)


def interval95(values):
    """The 95% percentile interval [lower, upper] of `values`: the order statistics sacrebleu's estimate_ci
    takes as its bounds (the n//40-th from each end), returned as they are, not as mean +- half their range."""
    values = np.sort(np.asarray(values))
    k = len(values) // 40
    return [float(values[k]), float(values[len(values) - k - 1])]


class Scorer:
    """BLEU and chrF (chrF2) against the same references, as sacrebleu computes them. `references`: one
    list of lines per reference set (several for multi-reference test sets)."""

    def __init__(self, references, tokenize="13a", lowercase=False):
        self.references, self.tokenize, self.lowercase = references, tokenize, lowercase
        self.signatures = {}  # {'bleu', 'chrf'}: sacrebleu's, known once a corpus is scored
        self._stats = {}  # (metric, hypotheses) -> per-sentence sufficient statistics
        self._scores = {}  # (metric, hypotheses) -> sacrebleu's corpus score

    def metrics(self):
        """Fresh metric objects: sacrebleu's cache references inside them."""
        return {"bleu": BLEU(tokenize=self.tokenize, lowercase=self.lowercase), "chrf": CHRF(lowercase=self.lowercase)}

    def corpus_score(self, name, metric, hypotheses):
        """sacrebleu's `metric.corpus_score` of `hypotheses`, computed once per metric and hypotheses (a
        system is the baseline or the system of many paired tests)."""
        key = (name, tuple(hypotheses))
        if key not in self._scores:
            self._scores[key] = metric.corpus_score(list(hypotheses), self.references)
            self.signatures[name] = str(metric.get_signature())
        return self._scores[key]

    def corpus(self, hypotheses):
        """{'bleu', 'chrf', 'length_ratio'}: the ratio as BLEU's brevity penalty sees it (hypothesis words
        over the closest reference's, corpus-level, sacrebleu's tokenization)."""
        metrics = self.metrics()
        bleu, chrf = (self.corpus_score(name, metrics[name], hypotheses) for name in ("bleu", "chrf"))
        return {"bleu": bleu.score, "chrf": chrf.score, "length_ratio": bleu.sys_len / bleu.ref_len}

    def sentence_chrf(self, hypotheses):
        chrf = self.metrics()["chrf"]
        return [chrf.sentence_score(h, [refs[i] for refs in self.references]).score for i, h in enumerate(hypotheses)]

    def statistics(self, name, metric, hypotheses):
        """Each sentence's sufficient statistics for `metric`, a float32 array (n_sentences, k), as
        sacrebleu's paired bootstrap holds them. BLEU's come from sacrebleu's public API (a sentence's
        BLEUScore carries [sys_len, ref_len] + counts + totals). chrF has no public statistics in sacrebleu
        2.6 (its sentence score is a number only), so they come from the metric's
        `_extract_corpus_statistics`, the function sacrebleu's own paired test calls."""
        key = (name, tuple(hypotheses))
        if key not in self._stats:
            if name == "bleu":
                # effective_order changes only a sentence's score, not its statistics; set, it keeps sacrebleu
                # from warning once per sentence that sentence BLEU wants it
                per_sentence = BLEU(tokenize=self.tokenize, lowercase=self.lowercase, effective_order=True)
                stats = []
                for i, hyp in enumerate(hypotheses):
                    s = per_sentence.sentence_score(hyp, [refs[i] for refs in self.references])
                    stats.append([s.sys_len, s.ref_len, *s.counts, *s.totals])
            else:
                stats = metric._extract_corpus_statistics(list(hypotheses), self.references)
            self._stats[key] = np.array(stats, dtype="float32")
        return self._stats[key]

    def resampled_scores(self, name, metric, hypotheses, draws):
        """The corpus score of every resample in `draws` (bootstrap_draws), computed exactly as sacrebleu's
        paired bootstrap computes it: the resample's statistics summed in float32, then scored by
        sacrebleu (BLEU: the public BLEU.compute_bleu with the metric's settings; chrF: its
        `_compute_score_from_stats`, having no public counterpart)."""
        stats = self.statistics(name, metric, hypotheses)
        n_samples, n = draws.shape
        # how often each sentence is drawn in each resample; the sums are whole numbers, exact in float64 and,
        # below 2**24, in the float32 sacrebleu sums them in
        counts = np.bincount((np.arange(n_samples)[:, None] * n + draws).ravel(), minlength=n_samples * n)
        sums = (counts.reshape(n_samples, n).astype(np.float64) @ stats.astype(np.float64)).astype(np.float32)
        if name == "bleu":
            order = metric.max_ngram_order
            return np.array([BLEU.compute_bleu(correct=s[2:2 + order], total=s[2 + order:], sys_len=int(s[0]),
                                               ref_len=int(s[1]), smooth_method=metric.smooth_method,
                                               smooth_value=metric.smooth_value,
                                               effective_order=metric.effective_order,
                                               max_ngram_order=order).score for s in sums])
        return np.array([metric._compute_score_from_stats(s).score for s in sums])

    def paired_bootstrap(self, baseline, system, n_samples=BOOTSTRAP_SAMPLES):
        """Paired bootstrap resampling of `system` against `baseline`, both scored on the same resampled
        sentence ids (bootstrap_draws). Per metric: 'difference' (system - baseline, corpus scores),
        'interval' (the 95% percentile interval of the resamples' system - baseline) and 'p', defined as
        sacrebleu's paired bootstrap defines it: with d the resamples' |system - baseline|, the share
        (count + 1) / (n_samples + 1) of resamples where d - mean(d) > |difference|. The p equals what
        `sacrebleu REF -i BASELINE SYSTEM --paired-bs --paired-bs-n N` prints without SACREBLEU_SEED set
        (the same draws). Identical outputs get p = 1 and a [0, 0] interval (sacrebleu's count would give
        1 / (n_samples + 1) for a zero difference)."""
        metrics = self.metrics()
        if list(baseline) == list(system):
            return {name: {"difference": 0.0, "p": 1.0, "interval": [0.0, 0.0]} for name in metrics}
        if len(baseline) != len(system):
            raise ValueError(f"paired bootstrap: {len(system)} system lines against {len(baseline)} baseline lines")
        draws = bootstrap_draws(len(system), n_samples)
        paired = {}
        for name, metric in metrics.items():
            difference = self.corpus_score(name, metric, system).score - self.corpus_score(name, metric, baseline).score
            resampled = (self.resampled_scores(name, metric, system, draws)
                         - self.resampled_scores(name, metric, baseline, draws))
            spread = np.abs(resampled)
            p = (np.sum(spread - spread.mean() > abs(difference)).item() + 1) / (n_samples + 1)
            paired[name] = {"difference": difference, "p": p, "interval": interval95(resampled)}
        return paired


def seed_pairs(n_system, n_baseline):
    """Seed i of the system against seed i of the baseline; a single-seed side against every seed of the
    other; otherwise the first min(n) seeds of each."""
    n = max(n_system, n_baseline) if min(n_system, n_baseline) == 1 else min(n_system, n_baseline)
    return [(i % n_system, i % n_baseline) for i in range(n)]


def summarize(tests):
    """Per metric, over the seed pairs' paired_bootstrap results `tests`: 'difference' the mean of the
    pairs' differences, 'sd' their standard deviation (the spread over seeds; None for one pair), 'p' the
    largest of the pairs' p (every pair has p at most this), 'per_seed' each pair's difference, interval
    and p. 'interval' only for a single pair: an interval belongs to one pair's resamples, not to a mean."""
    out = {}
    for name in tests[0]:
        runs = [t[name] for t in tests]
        diffs = [r["difference"] for r in runs]
        out[name] = {"difference": statistics.mean(diffs), "sd": statistics.stdev(diffs) if len(diffs) > 1 else None,
                     "p": max(r["p"] for r in runs),
                     "per_seed": [{k: r[k] for k in ("difference", "interval", "p")} for r in runs]}
        if len(runs) == 1:
            out[name]["interval"] = runs[0]["interval"]
    return out


def compare(scorer, system, baseline, n_samples=BOOTSTRAP_SAMPLES):
    """Paired bootstrap of each seed pair (`system`, `baseline`: hypothesis lists per seed; seed_pairs),
    summarized per metric (summarize)."""
    pairs = seed_pairs(len(system), len(baseline))
    tests = [scorer.paired_bootstrap(baseline[j], system[i], n_samples) for i, j in pairs]
    return {"seed_pairs": [[i + 1, j + 1] for i, j in pairs], **summarize(tests)}


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
