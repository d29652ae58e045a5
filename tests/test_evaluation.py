"""fairseq_wd.evaluation: sacrebleu's paired bootstrap as `sacrebleu --paired-bs` prints it, seeds paired,
and the per-sentence checks (loops, copies, length limit)."""
import random
import re
import subprocess

import pytest
from utils import BIN, WORDS

from fairseq_wd import evaluation


def noisy(lines, rng, rate):
    """Each word replaced by another toy word with probability `rate`."""
    return [" ".join(rng.choice(WORDS) if rng.random() < rate else w for w in line.split()) for line in lines]


@pytest.fixture(scope="module")
def systems():
    rng = random.Random(5)
    refs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for _ in range(120)]
    return refs, noisy(refs, rng, 0.3), noisy(refs, rng, 0.2)


def test_paired_bootstrap_is_sacrebleus(systems, tmp_path):
    """Same p-values and scores as the sacrebleu command; the interval of the difference is centred on
    the difference of the two systems' bootstrap means that sacrebleu prints (the same resamples)."""
    refs, base, sys = systems
    for name, lines in (("ref", refs), ("base", base), ("sys", sys)):
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    cli = subprocess.run([f"{BIN}/sacrebleu", tmp_path / "ref", "-i", tmp_path / "base", tmp_path / "sys", "-m", "bleu",
                          "chrf", "--paired-bs", "-f", "text"], capture_output=True, text=True, check=True).stdout
    base_cells, sys_cells = [re.findall(r"([\d.]+) \(([\d.]+) ± [\d.]+\)", line)
                             for line in cli.splitlines() if re.search(r"│\s+(Baseline: \S+|\S+sys) │", line)]
    p_values = [float(p) for p in re.findall(r"\(p = ([\d.]+)\)", cli)]
    paired = evaluation.Scorer([refs]).paired_bootstrap(base, sys)
    for k, metric in enumerate(("bleu", "chrf")):
        (base_score, base_mean), (sys_score, sys_mean) = base_cells[k], sys_cells[k]
        got = paired[metric]
        assert round(got["p"], 4) == p_values[k]
        assert got["difference"] == pytest.approx(float(sys_score) - float(base_score), abs=0.11)
        low, high = got["ci"]
        assert low < got["difference"] < high
        assert (low + high) / 2 == pytest.approx(float(sys_mean) - float(base_mean), abs=0.11), "the CLI's resamples"
    assert paired["bleu"]["difference"] > 5 and paired["bleu"]["p"] < 0.01, "20% against 30% noise is clear"


def test_interval_comes_from_paired_resamples(systems):
    """One sentence of 120 fixed: every resample moves both systems alike, so the difference's interval
    is a fraction of a point, where each system's own interval spans several."""
    refs, base, _ = systems
    fixed = [refs[0]] + base[1:]
    paired = evaluation.Scorer([refs]).paired_bootstrap(base, fixed)["bleu"]
    assert 0 < paired["difference"] < 1 and paired["ci"][1] - paired["ci"][0] < 1.5, "unpaired: about 14 points"


def test_identical_outputs_are_no_difference(systems):
    refs, base, _ = systems
    paired = evaluation.Scorer([refs]).paired_bootstrap(base, list(base))
    assert paired["bleu"] == {"difference": 0.0, "p": 1.0, "ci": [0.0, 0.0], "system_bootstrap_mean": None}


def test_seeds_pair_up_and_the_weakest_p_is_shown(systems):
    refs, base, sys = systems
    rng = random.Random(9)
    seeds = [sys, noisy(refs, rng, 0.28), noisy(refs, rng, 0.2)]
    scorer = evaluation.Scorer([refs])
    out = evaluation.compare(scorer, seeds, [base])
    assert out["seed_pairs"] == [[1, 1], [2, 1], [3, 1]], "one baseline seed against every system seed"
    bleu = out["bleu"]
    diffs = [s["difference"] for s in bleu["per_seed"]]
    assert bleu["difference"] == pytest.approx(sum(diffs) / 3) and bleu["sd"] > 0
    weakest = max(bleu["per_seed"], key=lambda s: s["p"])
    assert bleu["p"] == weakest["p"] > min(s["p"] for s in bleu["per_seed"]) and bleu["ci"] == weakest["ci"]
    assert evaluation.seed_pairs(3, 3) == [(0, 0), (1, 1), (2, 2)]
    assert evaluation.seed_pairs(2, 3) == [(0, 0), (1, 1)]


def test_checks_count_limits_loops_and_copies():
    sources = ["ana are mere", "la piata mare", "casa rosie verde", "noua veche mica"]
    hyps = ["ANA ERA EREM", "la piata mare", "a b c d a b c d a b c d", "x y"]
    got = evaluation.checks(hyps, lengths=[3, 3, 12, 2], limits=[3, 5, 12, 7], sources=sources, length_ratio=0.9)
    assert got == {"at_length_limit": 0.5, "loops": 0.25, "copies_source": 0.25, "length_ratio": 0.9}
    assert not evaluation.loops("a b c d a b c d e a b c"), "a 4-gram twice is no loop"


def test_losses_and_sentences_tsv(tmp_path):
    chrf = {"teacher": [90, 50, 70, 10], "wd": [20, 55, 40, 10]}
    assert evaluation.losses(chrf, "teacher", "wd", n=5) == [0, 2], "worst first, only sentences it loses"
    evaluation.write_sentences(tmp_path / "s.tsv", ["s\t0", "s1", "s2", "s3"], ["r0", "r1", "r2", "r3"],
                               {"teacher": ["a", "b", "c", "d"], "wd": ["e", "f", "g", "h"]}, chrf)
    rows = [line.split("\t") for line in (tmp_path / "s.tsv").read_text().splitlines()]
    assert rows[0] == ["id", "source", "reference", "teacher", "teacher chrF", "wd", "wd chrF"]
    assert rows[1] == ["0", "s 0", "r0", "a", "90.0", "e", "20.0"] and len(rows) == 5
