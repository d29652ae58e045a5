"""fairseq_wd.bench.scoring: the paired bootstrap (p as `sacrebleu --paired-bs` prints it, the percentile
interval of the difference, both from one draw of resamples), seeds paired, and the per-sentence checks
(loops, copies, length limit)."""
import os
import random
import re
import statistics
import subprocess

import numpy as np
import pytest
from sacrebleu.metrics import BLEU, CHRF
from utils import BIN, WORDS

from fairseq_wd.bench import scoring


def noisy(lines, rng, rate):
    """Each word replaced by another toy word with probability `rate`."""
    return [" ".join(rng.choice(WORDS) if rng.random() < rate else w for w in line.split()) for line in lines]


@pytest.fixture(scope="module")
def systems():
    rng = random.Random(5)
    refs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for _ in range(120)]
    return refs, noisy(refs, rng, 0.3), noisy(refs, rng, 0.2)


def sacrebleu_p(tmp_path, refs, base, sys, n_samples):
    """The p-values (BLEU, chrF) that the sacrebleu command prints for `sys` against `base`, run as a user
    runs it: no SACREBLEU_SEED, so its default seed."""
    for name, lines in (("ref", refs), ("base", base), ("sys", sys)):
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "SACREBLEU_SEED"}
    cli = subprocess.run([f"{BIN}/sacrebleu", tmp_path / "ref", "-i", tmp_path / "base", tmp_path / "sys", "-m", "bleu",
                          "chrf", "--paired-bs", "--paired-bs-n", str(n_samples), "-f", "text"],
                         capture_output=True, text=True, check=True, env=env).stdout
    return [float(p) for p in re.findall(r"\(p = ([\d.]+)\)", cli)]


@pytest.mark.parametrize("seed_env", [None, "none", "7"])
def test_p_is_the_sacrebleu_commands_whatever_sacrebleu_seed(systems, tmp_path, monkeypatch, seed_env):
    """The p of both metrics is what `sacrebleu REF -i BASE SYS --paired-bs --paired-bs-n N` prints, to its
    every digit (4 digits tell each count of 500 resamples apart), and stays so when SACREBLEU_SEED is set
    in our process (`none`: sacrebleu's own resamples would then be random and unpaired). Two close systems,
    so that p is far from its floor and the count matters."""
    refs, base, _ = systems
    close = noisy(refs, random.Random(11), 0.28)
    printed = sacrebleu_p(tmp_path, refs, base, close, 500)
    if seed_env is None:
        monkeypatch.delenv("SACREBLEU_SEED", raising=False)
    else:
        monkeypatch.setenv("SACREBLEU_SEED", seed_env)
    paired = scoring.Scorer([refs]).paired_bootstrap(base, close, n_samples=500)
    assert [round(paired[m]["p"], 4) for m in ("bleu", "chrf")] == printed
    assert 0.05 < min(printed), "close systems: a p the count decides"
    scores = {m: [scoring.Scorer([refs]).corpus(h)[m] for h in (base, close)] for m in ("bleu", "chrf")}
    for m in ("bleu", "chrf"):
        assert paired[m]["difference"] == pytest.approx(scores[m][1] - scores[m][0], abs=1e-9)


def test_interval_is_the_percentiles_of_the_paired_difference(systems):
    """Rescored independently with sacrebleu's public corpus_score on each resampled corpus (the draws of
    scoring.bootstrap_draws, sacrebleu's RNG and default seed): the interval is the 2.5% and 97.5% order
    statistics of the resamples' system - baseline, not a mean +- half their range."""
    refs, base, sys = (lines[:60] for lines in systems)
    n_samples = 120
    draws = scoring.bootstrap_draws(len(refs), n_samples)
    assert (draws == np.random.default_rng(12345).choice(len(refs), size=(n_samples, len(refs)))).all()
    bleu, chrf = BLEU(), CHRF()
    diffs = {"bleu": [], "chrf": []}
    for ids in draws:
        ref = [[refs[i] for i in ids]]
        for name, metric in (("bleu", bleu), ("chrf", chrf)):
            diffs[name].append(metric.corpus_score([sys[i] for i in ids], ref).score
                               - metric.corpus_score([base[i] for i in ids], ref).score)
    paired = scoring.Scorer([refs]).paired_bootstrap(base, sys, n_samples=n_samples)
    for name in ("bleu", "chrf"):
        ordered = sorted(diffs[name])
        assert paired[name]["interval"] == pytest.approx([ordered[3], ordered[116]], abs=1e-3), name
        assert paired[name]["interval"][0] < paired[name]["difference"] < paired[name]["interval"][1]
    assert paired["bleu"]["difference"] > 5 and paired["bleu"]["p"] < 0.05, "20% against 30% noise is clear"


def test_interval_comes_from_paired_resamples(systems, monkeypatch):
    """One sentence of 120 fixed: every resample moves both systems alike, so the difference's interval
    is a fraction of a point, where each system's own interval spans several; so too with
    SACREBLEU_SEED=none, under which sacrebleu's own resamples of the two systems are independent."""
    monkeypatch.setenv("SACREBLEU_SEED", "none")
    refs, base, _ = systems
    fixed = [refs[0]] + base[1:]
    paired = scoring.Scorer([refs]).paired_bootstrap(base, fixed)["bleu"]
    assert 0 < paired["difference"] < 1 and paired["interval"][1] - paired["interval"][0] < 1.5, "unpaired: 14 points"


def test_identical_outputs_are_no_difference(systems):
    refs, base, _ = systems
    paired = scoring.Scorer([refs]).paired_bootstrap(base, list(base))
    assert paired["bleu"] == {"difference": 0.0, "p": 1.0, "interval": [0.0, 0.0]}


def test_seeds_give_the_spread_and_each_pairs_p(systems):
    """Several seed pairs: the differences' mean and sd over the pairs, each pair's own p and interval,
    and no interval beside the mean (an interval is one pair's resamples'); 'p' is the largest."""
    refs, base, sys = systems
    rng = random.Random(9)
    seeds = [sys, noisy(refs, rng, 0.28), noisy(refs, rng, 0.2)]
    scorer = scoring.Scorer([refs])
    out = scoring.compare(scorer, seeds, [base], n_samples=300)
    assert out["seed_pairs"] == [[1, 1], [2, 1], [3, 1]], "one baseline seed against every system seed"
    bleu = out["bleu"]
    alone = [scorer.paired_bootstrap(base, s, n_samples=300)["bleu"] for s in seeds]
    assert bleu["per_seed"] == alone, "each pair's own test"
    diffs = [s["difference"] for s in alone]
    assert bleu["difference"] == pytest.approx(statistics.mean(diffs))
    assert bleu["sd"] == pytest.approx(statistics.stdev(diffs))
    assert bleu["p"] == max(s["p"] for s in alone) > min(s["p"] for s in alone)
    assert "interval" not in bleu and "ci" not in bleu
    one = scoring.compare(scorer, [sys], [base], n_samples=300)["bleu"]
    assert one["sd"] is None and one["interval"] == alone[0]["interval"]
    assert scoring.seed_pairs(3, 3) == [(0, 0), (1, 1), (2, 2)]
    assert scoring.seed_pairs(2, 3) == [(0, 0), (1, 1)]


def test_checks_count_limits_loops_and_copies():
    sources = ["ana are mere", "la piata mare", "casa rosie verde", "noua veche mica"]
    hyps = ["ANA ERA EREM", "la piata mare", "a b c d a b c d a b c d", "x y"]
    got = scoring.checks(hyps, lengths=[3, 3, 12, 2], limits=[3, 5, 12, 7], sources=sources, length_ratio=0.9)
    assert got == {"at_length_limit": 0.5, "loops": 0.25, "copies_source": 0.25, "length_ratio": 0.9}
    assert not scoring.loops("a b c d a b c d e a b c"), "a 4-gram twice is no loop"


def test_losses_and_sentences_tsv(tmp_path):
    chrf = {"teacher": [90, 50, 70, 10], "wd": [20, 55, 40, 10]}
    assert scoring.losses(chrf, "teacher", "wd", n=5) == [0, 2], "worst first, only sentences it loses"
    scoring.write_sentences(tmp_path / "s.tsv", ["s\t0", "s1", "s2", "s3"], ["r0", "r1", "r2", "r3"],
                               {"teacher": ["a", "b", "c", "d"], "wd": ["e", "f", "g", "h"]}, chrf)
    rows = [line.split("\t") for line in (tmp_path / "s.tsv").read_text().splitlines()]
    assert rows[0] == ["id", "source", "reference", "teacher", "teacher chrF", "wd", "wd chrF"]
    assert rows[1] == ["0", "s 0", "r0", "a", "90.0", "e", "20.0"] and len(rows) == 5
