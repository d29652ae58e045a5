"""fairseq-wd-bench's own options through its console script, on the toy language: length limits
that CTranslate2 rows honour as fairseq's do, unknown options refused, --generate-args for the
fairseq rows only, weights MB, and seeds, --compare and --focus."""
import json
import os
import re
import statistics

import pytest
import torch
from utils import TINY_DIMS, run, train

import fairseq_wd  # noqa: F401
from fairseq import checkpoint_utils
from fairseq_wd.datasets.data_bin import dictionaries
from fairseq_wd.shortlist import vmap as sl
from fairseq_wd.checkpoints import load_state, model_args, save_plain_transformer
from fairseq_wd.cli.bench import main
from fairseq_wd.bench.decoding import model_size


@pytest.fixture(scope="module")
def ct2_f32(teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("ct2") / "f32"
    run("fairseq-wd-export", teacher, "--to", "ctranslate2", "--quantization", "none", "--output", out)
    return out


def bench(data_bin, teacher, ct2_f32, out, *args):
    """One run of the teacher and its float32 CTranslate2 copy: (report, {row: hypotheses as token lists})."""
    run("fairseq-wd-bench", data_bin, "--model", f"teacher={teacher}", "--model", f"ct2={ct2_f32}",
        "--post-process", "none", "--cpu", "--repeats", "1", "--output-dir", out, *args)
    report = json.load(open(out / "bench.json"))
    return report, {m["name"]: [h.split() for h in open(out / f"{m['name']}.hyp").read().splitlines()]
                    for m in report["models"]}


@pytest.mark.parametrize("min_len,max_len", [(1, 3), (5, 5)])
def test_length_limits_hold_for_every_row(data_bin, teacher, ct2_f32, tmp_path, min_len, max_len):
    report, hyps = bench(data_bin, teacher, ct2_f32, tmp_path, "--max-len-a", "0", "--max-len-b", max_len,
                         "--min-len", min_len)
    for name, hs in hyps.items():  # the toy translations have 3 to 12 words
        lengths = [len(h) for h in hs]
        assert len(lengths) == 20 and min(lengths) >= min_len and max(lengths) == max_len, (name, lengths)
        share = statistics.mean(n == max_len for n in lengths)
        assert report["models"][[m["name"] for m in report["models"]].index(name)]["checks"]["at_length_limit"] == share
    settings = report["settings"]
    assert (settings["max_len_a"], settings["max_len_b"], settings["min_len"]) == (0, max_len, min_len)
    assert f"max length {max_len}, min length {min_len}" in (tmp_path / "bench.md").read_text()


def test_ctranslate2_limits_follow_fairseq_batches(data_bin, raw_dir, teacher, ct2_f32, tmp_path):
    """a * source + b per batch of 8 (sorted by length, as fairseq-generate): the limit cuts most
    translations, at lengths that differ between batches; CTranslate2 must cut each where fairseq does."""
    report, hyps = bench(data_bin, teacher, ct2_f32, tmp_path, "--max-len-a", "0.5", "--max-len-b", "0",
                         "--batch-size", "8")
    lengths = {name: [len(h) for h in hs] for name, hs in hyps.items()}
    references = [line.split() for line in open(raw_dir / "test.tgt").read().splitlines()]
    assert sum(n < len(r) for n, r in zip(lengths["teacher"], references)) >= 15
    assert len(set(lengths["teacher"])) >= 3, "batches of different source lengths, different limits"
    assert lengths["ct2"] == lengths["teacher"]
    at_limit = [m["checks"]["at_length_limit"] for m in report["models"]]
    assert at_limit[0] == at_limit[1] >= 0.75, "the per-batch limit, counted as it is applied"
    assert "max length 0.5 x source + 0" in (tmp_path / "bench.md").read_text()


def test_generate_args_reach_only_fairseq_rows(data_bin, raw_dir, teacher, ct2_f32, tmp_path):
    """With --score-reference fairseq-generate scores the references instead of decoding: the fairseq
    row's hypotheses are the references, the CTranslate2 row still translates."""
    report, hyps = bench(data_bin, teacher, ct2_f32, tmp_path, "--generate-args=--score-reference", "--focus", "ct2")
    references = [line.split() for line in open(raw_dir / "test.tgt").read().splitlines()]
    assert hyps["teacher"] == references and hyps["ct2"] != references
    assert report["settings"]["generate_args"] == ["--score-reference"]
    assert "CTranslate2 rows do not get them" in report["settings"]["generate_args_note"]
    assert "fairseq rows only (not CTranslate2): --score-reference" in (tmp_path / "bench.md").read_text()
    assert report["focus"]["model"] == "ct2" and "Where #2 ct2 loses most against #1 teacher" in (
        tmp_path / "bench.md").read_text()


def test_unknown_and_owned_options_are_refused(data_bin, tmp_path, capsys):
    common = [str(data_bin), "--model", f"x={__file__}", "--cpu", "--output-dir", str(tmp_path)]
    broken, vmap = tmp_path / "broken.txt", str(tmp_path / "vmap.txt")
    broken.write_text("\tANA\nana\tANA\nmere\tEREM ZORBAX\n")
    sl.write_vmap(sl.Vmap(always=["ANA"]), vmap)
    proc = run("fairseq-wd-bench", *common, "--no-repeat-ngram-size", "1", check=False)
    assert proc.returncode != 0 and "unrecognized arguments: --no-repeat-ngram-size 1" in proc.stderr
    assert "--generate-args" in proc.stderr
    for extra, message in ((["--max-len", "5"], "unrecognized arguments: --max-len 5"),  # no abbreviations
                           (["--generate-args=--nbest 1 --max-len-b 10"],
                            "--max-len-b is set by fairseq-wd-bench for every row; use fairseq-wd-bench's --max-len-b"),
                           (["--generate-args=--max-sentences=8"], "use fairseq-wd-bench's --batch-size"),
                           (["--generate-args=--no-repeat-ngram-sise 1"],
                            "fairseq-generate does not know --no-repeat-ngram-sise 1"),
                           (["--compare", "x=teacher"], "no --model named 'teacher'; the rows are ['x']"),
                           (["--compare", "x"], "write ROW=BASELINE"), (["--compare", "x=x"], "a row against itself"),
                           (["--focus", "y"], "--focus 'y': no --model of that name"),
                           (["--repeats", "0"], "--repeats must be at least 1"),
                           (["--shortlist", str(broken)], "broken.txt, line 3: target 'ZORBAX' is not in the target"),
                           (["--shortlist", vmap, "--generate-args=--task language_modeling"],
                            "--task language_modeling with --shortlist"),
                           (["--generate-args=--shortlist x"], "use fairseq-wd-bench's --shortlist"),
                           (["--generate-args=--max-tokens 100"], "--max-tokens is refused: its batches would differ"),
                           (["--generate-args=--required-batch-size-multiple 1"],
                            "--required-batch-size-multiple is refused: its batches would differ"),
                           (["--generate-args=--quiet"], "--quiet is refused: fairseq-generate would print no hypotheses"),
                           (["--generate-args=--results-path out"], "--results-path is refused: the hypotheses would go"),
                           (["--generate-args=--num-workers 2"], "--num-workers is refused: fairseq-wd-bench loads"),
                           (["--generate-args=--bpe subword_nmt"], "fairseq cannot build --bpe subword_nmt"),
                           (["--shortlist", f"a={vmap}", "--shortlist", vmap], "give each a distinct label"),
                           (["--shortlist", "a=missing.txt"], "shortlist missing.txt does not exist")):
        with pytest.raises(SystemExit) as refused:
            main(common + extra)
        assert refused.value.code != 0
        assert message in capsys.readouterr().err + str(refused.value.code)
    assert not (tmp_path / "bench.json").exists()


def test_weights_mb_counts_parameter_bytes(teacher, tmp_path):
    """Not the file's size: the teacher's file also holds Adam's state; a float16 copy weighs half."""
    models, _ = checkpoint_utils.load_model_ensemble([str(teacher)])
    params = sum(p.numel() for p in models[0].parameters())
    assert model_size(teacher) == (params, 4 * params)
    assert 4 * params < os.path.getsize(teacher) / 2
    state = load_state(teacher)
    save_plain_transformer(str(tmp_path / "half.pt"), state["model"], model_args(state), dtype=torch.float16)
    assert model_size(str(tmp_path / "half.pt")) == (params, 2 * params)


WD = "TINY WD (orig+teacher-out, generator then CE)"  # a name with spaces, parentheses, '+' and a comma
SL = " + shortlist"


@pytest.fixture(scope="module")
def weak_seeds(data_bin, tmp_path_factory):
    """Two seeds of a barely trained model: worse than the teacher, and different from each other."""
    return [train(data_bin, tmp_path_factory.mktemp(f"seed{s}"), "wd_transformer_base", *TINY_DIMS, "--seed", s,
                  updates=25) for s in (1, 2)]


def test_seeds_significance_sentences_and_shortlist(data_bin, teacher, ct2_f32, weak_seeds, tmp_path):
    """A name given twice is one row of two seeds (mean and sd, timed on the first); every row is tested
    against the first and --compare adds a pair; sentences.tsv and bench.md's focus section show where the
    last plain fairseq row (not the last row, CTranslate2's shortlist row) loses. --shortlist adds after each
    row its shortlist row, every seed decoded with it, tested against its plain row: a shortlist without
    the rules of 'mare' and 'casa' keeps their translations out of every shortlist row, fairseq's and
    CTranslate2's, while the plain teacher writes them."""
    src_dict, tgt_dict = dictionaries(str(data_bin), "src", "tgt")
    vmap = sl.build_vmap(str(data_bin), top_k=1, frequent=0)
    del vmap.rules["mare"], vmap.rules["casa"]
    sl.write_vmap(vmap, str(tmp_path / "vmap.txt"), src_dict, tgt_dict)
    proc = run("fairseq-wd-bench", data_bin, "--model", f"teacher={teacher}", "--model", f"{WD}={weak_seeds[0]}",
               "--model", f"ct2={ct2_f32}", "--model", f"{WD}={weak_seeds[1]}", "--compare", f"{WD}=ct2",
               "--shortlist", tmp_path / "vmap.txt", "--post-process", "none", "--cpu", "--repeats", "1",
               "--output-dir", tmp_path)
    names = ["teacher", f"{WD}", "ct2"]
    rows = [n + s for n in names for s in ("", SL)]
    assert re.findall(r"\| bench: (.+)", proc.stderr) == [f"run 1/1, {n}" for n in rows] + [
        f"{WD}, seed 2/2 (quality only)", f"{WD}{SL}, seed 2/2 (quality only)"]
    report = json.load(open(tmp_path / "bench.json"))
    assert [m["name"] for m in report["models"]] == rows
    teacher_row, _, wd, wd_sl, ct2_row, _ = report["models"]
    assert [s["path"] for s in wd["seeds"]] == [str(p) for p in weak_seeds] and wd["path"] == str(weak_seeds[0])
    assert [s["path"] for s in wd_sl["seeds"]] == [str(p) for p in weak_seeds] and wd_sl["plain"] == WD
    seed_bleu = [s["bleu"] for s in wd["seeds"]]
    assert seed_bleu[0] != seed_bleu[1] and wd["bleu_sd"] > 0
    assert abs(wd["bleu"] - statistics.mean(seed_bleu)) < 0.01 and len(wd["runs"]) == 1
    assert teacher_row["bleu_sd"] is None and teacher_row["chrf"] > 0 and "nc:6" in report["settings"]["sacrebleu_chrf"]
    assert all(r["warmup_s"] > 0 for m in report["models"] for r in m["runs"])
    hyps = {f.name: f.read_text().split() for f in tmp_path.glob("*.hyp")}
    assert {"ERAM", "ASAC"} <= set(hyps["teacher.hyp"])
    shortlisted = [f"{n}{SL}.hyp" for n in names] + [f"{WD}{SL}.seed2.hyp"]
    assert all(hyps[f] and not {"ERAM", "ASAC"} & set(hyps[f]) for f in shortlisted)
    tests = {(t["model"], t["baseline"]): t for t in report["significance"]}
    assert list(tests) == [(r, "teacher") for r in rows[1:]] + [(WD, "ct2"), (WD + SL, WD), ("ct2" + SL, "ct2")]
    assert tests[(WD + SL, WD)]["seed_pairs"] == [[1, 1], [2, 2]]
    wd_vs_teacher = tests[(WD, "teacher")]
    assert wd_vs_teacher["seed_pairs"] == [[1, 1], [2, 1]]
    assert wd_vs_teacher["bleu"]["p"] == max(s["p"] for s in wd_vs_teacher["bleu"]["per_seed"])
    assert wd_vs_teacher["bleu"]["difference"] == pytest.approx(wd["bleu"] - teacher_row["bleu"], abs=0.01)
    shortlist, = report["shortlists"]
    assert shortlist["coverage"] < 1 and shortlist["candidates_mean"] == len(tgt_dict) - 2 - 6, \
        "one batch of 20: every target but ERAM, ASAC and fairseq's 6 madeupwords"
    md = (tmp_path / "bench.md").read_text()
    assert f"| 3 | {WD} | 2 |" in md and f"| #3 {WD} | #5 ct2 | 2 |" in md and f"| #4 {WD}{SL} | #3 {WD} | 2 |" in md
    assert f"| vs #2 teacher{SL} | vs #1 teacher |" in md
    assert f"Where #3 {WD} loses most against #1 teacher" in md and report["focus"]["model"] == WD
    shown = report["focus"]["sentences"]
    drops = [x["chrf_baseline"] - x["chrf_model"] for x in shown]
    assert 1 <= len(shown) <= 5 and drops == sorted(drops, reverse=True) and drops[-1] > 0
    tsv = [line.split("\t") for line in (tmp_path / "sentences.tsv").read_text().splitlines()]
    assert tsv[0] == ["id", "source", "reference"] + [c for r in rows for c in (r, f"{r} chrF")]
    assert len(tsv) == 21 and tsv[1][7] == open(tmp_path / f"{WD}.hyp").readline().strip()
    assert (tmp_path / f"{WD}.seed2.hyp").exists()
