"""fairseq-wd-bench's own options through its console script, on the toy language: length limits
that CTranslate2 rows honour as fairseq's do, unknown options refused, --generate-args for the
fairseq rows only, and weights MB."""
import json
import os

import pytest
import torch
from utils import run

import fairseq_wd  # noqa: F401
from fairseq import checkpoint_utils
from fairseq_wd.checkpoints import load_state, model_args, save_plain_transformer
from fairseq_wd.cli.bench import main
from fairseq_wd.decoding import model_size


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
    assert "max length 0.5 x source + 0" in (tmp_path / "bench.md").read_text()


def test_generate_args_reach_only_fairseq_rows(data_bin, raw_dir, teacher, ct2_f32, tmp_path):
    """With --score-reference fairseq-generate scores the references instead of decoding: the fairseq
    row's hypotheses are the references, the CTranslate2 row still translates."""
    report, hyps = bench(data_bin, teacher, ct2_f32, tmp_path, "--generate-args=--score-reference")
    references = [line.split() for line in open(raw_dir / "test.tgt").read().splitlines()]
    assert hyps["teacher"] == references and hyps["ct2"] != references
    assert report["settings"]["generate_args"] == ["--score-reference"]
    assert "CTranslate2 rows do not get them" in report["settings"]["generate_args_note"]
    assert "fairseq rows only (not CTranslate2): --score-reference" in (tmp_path / "bench.md").read_text()


def test_unknown_and_owned_options_are_refused(data_bin, tmp_path, capsys):
    common = [str(data_bin), "--model", f"x={__file__}", "--cpu", "--output-dir", str(tmp_path)]
    proc = run("fairseq-wd-bench", *common, "--no-repeat-ngram-size", "1", check=False)
    assert proc.returncode != 0 and "unrecognized arguments: --no-repeat-ngram-size 1" in proc.stderr
    assert "--generate-args" in proc.stderr
    for extra, message in ((["--max-len", "5"], "unrecognized arguments: --max-len 5"),  # no abbreviations
                           (["--generate-args=--nbest 1 --max-len-b 10"],
                            "--max-len-b is set by fairseq-wd-bench for every row; use fairseq-wd-bench's --max-len-b"),
                           (["--generate-args=--max-sentences=8"], "use fairseq-wd-bench's --batch-size"),
                           (["--generate-args=--no-repeat-ngram-sise 1"],
                            "fairseq-generate does not know --no-repeat-ngram-sise 1")):
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
