"""fairseq-wd-bench compares like with like: every task's fairseq rows warmed up, both clocks around the
same work, the pair decoded is the pair scored, and Moses-tokenized output scored detokenized in every row."""
import argparse
import json
import re
import shlex
import shutil
from types import SimpleNamespace

import pytest
from test_multilingual import ml  # noqa: F401 (the toy multilingual teacher)
from utils import run

import fairseq_wd  # noqa: F401
from fairseq_wd.bench import decoding, testset
from fairseq_wd.datasets.data_bin import DataBinError
from fairseq_wd.bench import run as bench_run
from fairseq_wd.cli import bench
from fairseq_wd.export import ct2


def test_multilingual_fairseq_rows_warm_up(ml):  # noqa: F811
    """fairseq's multilingual task overrides inference_step without super(): the warm-up sits in the
    generator, which every task calls, so a multilingual row's first batch is decoded once off the clock."""
    data, langs, teacher, _ = ml
    args = bench.get_parser().parse_args([str(data), "--model", f"t={teacher}", "--generate-args",
                                          shlex.join(["--task", "translation_multi_simple_epoch", *map(str, langs)])])
    extra, parsed = bench_run.generate_args(args)
    test = testset.TestSet(str(data), "test", "none", ("src", "tgt2"), bench_run.language_settings(args, parsed))
    got = decoding.decoder_for(str(teacher), decoding.Settings(2, 1.0, 8, 0, 200, 1, 1, "cpu", tuple(extra))
                               ).translate(test)
    assert got.warmup_s is not None and got.warmup_s > 0 and len(got.batch_seconds) == 2
    assert sum(h.split() != [] and all(w.istitle() for w in h.split()) for h in got.hypotheses) >= 12


def test_ctranslate2_clock_holds_only_its_translate_calls(monkeypatch):
    """Every batch's token lists (language tokens included) are built before the clock starts: the clock
    (each start-stop pair of perf_counter calls) runs only around translate_batch."""
    state = {"running": False, "t": 0.0, "read": []}

    def perf_counter():
        state["running"], state["t"] = not state["running"], state["t"] + 1
        return state["t"]

    class Tokens(list):
        def __iter__(self):
            state["read"].append(state["running"])
            return super().__iter__()

    class Translator:
        def __init__(self, *args, **kwargs):
            pass

        def translate_batch(self, source, **kwargs):
            assert state["running"] and kwargs["target_prefix"] == [["__tgt__"]] * len(source)
            return [SimpleNamespace(hypotheses=[[*kwargs["target_prefix"][0], *tokens[1:]]]) for tokens in source]

    monkeypatch.setattr(ct2, "require", lambda: SimpleNamespace(Translator=Translator))
    monkeypatch.setattr(ct2, "time", SimpleNamespace(perf_counter=perf_counter))
    sources = [Tokens(["a", "b"]), Tokens(["c"]), Tokens(["d", "e", "f"])]
    outputs, seconds, warmup = ct2.translate("model", sources, [[1, 0], [2]], 2, 1.0, 1, source_prefix=["__src__"],
                                             target_prefix=["__tgt__"])
    assert outputs == [["__tgt__", "a", "b"], ["__tgt__", "c"], ["__tgt__", "d", "e", "f"]]
    assert seconds == [1.0, 1.0] and warmup == 1.0
    assert state["read"] and not any(state["read"]), "a source read while the clock ran"


@pytest.fixture(scope="module")
def both_directions(data_bin, tmp_path_factory):
    """The toy test set as xx->aa beside its reverse direction aa->xx, which sorts first."""
    d = tmp_path_factory.mktemp("both-directions")
    for old, new in (("src", "xx"), ("tgt", "aa")):
        shutil.copy(data_bin / f"dict.{old}.txt", d / f"dict.{new}.txt")
        for ext in ("bin", "idx"):
            for files in ("xx-aa", "aa-xx"):
                shutil.copy(data_bin / f"test.src-tgt.{old}.{ext}", d / f"test.{files}.{new}.{ext}")
    return d


def test_the_pair_given_is_the_pair_scored(both_directions, raw_dir, teacher, tmp_path):
    """-s/-t in --generate-args choose the references too; without them a data-bin of two directions is
    refused (fairseq would decode whichever its folder listing shows first)."""
    common = [both_directions, "--model", f"teacher={teacher}", "--post-process", "none", "--cpu", "--repeats", "1"]
    refused = run("fairseq-wd-bench", *common, "--output-dir", tmp_path / "x", check=False)
    assert refused.returncode != 0 and "holds the pairs aa-xx, xx-aa" in refused.stderr
    assert "--generate-args='-s aa -t xx'" in refused.stderr and not (tmp_path / "x").exists()
    with pytest.raises(DataBinError, match="only one of -s/-t"):
        testset.TestSet(str(both_directions), "test", "none", options=argparse.Namespace(source_lang="xx",
                                                                                         target_lang=None))
    run("fairseq-wd-bench", *common, "--generate-args=-s xx -t aa", "--output-dir", tmp_path)
    references = [line.split("\t")[2] for line in (tmp_path / "sentences.tsv").read_text().splitlines()[1:]]
    assert references == (raw_dir / "test.tgt").read_text().splitlines()
    assert json.loads((tmp_path / "bench.json").read_text())["models"][0]["bleu"] > 20


MOSES = {"ANA": "@-@", "ASAC": "&amp;"}  # two toy target words renamed as Moses writes a dash and an ampersand


@pytest.fixture(scope="module")
def moses_bin(data_bin, tmp_path_factory):
    """The toy data-bin whose target dictionary spells two words as Moses-tokenized text does: the teacher's
    outputs (fairseq's and CTranslate2's) and the binarized targets then need Moses detokenization."""
    d = tmp_path_factory.mktemp("moses") / "bin"
    shutil.copytree(data_bin, d)
    lines = (d / "dict.tgt.txt").read_text().splitlines()
    (d / "dict.tgt.txt").write_text("".join(f"{MOSES.get(w, w)} {n}\n" for w, n in (x.split() for x in lines)))
    return d


def test_moses_output_is_detokenized_in_every_row(moses_bin, raw_dir, teacher, tmp_path):
    """--generate-args='--tokenizer moses': fairseq's rows, CTranslate2's rows and the default references
    are all detokenized by fairseq's own Moses tokenizer, in the target language's rules."""
    from sacremoses import MosesDetokenizer

    run("fairseq-wd-export", teacher, "--to", "ctranslate2", "--quantization", "none", "--data", moses_bin,
        "--output", tmp_path / "ct2")
    out = tmp_path / "bench"
    run("fairseq-wd-bench", moses_bin, "--model", f"teacher={teacher}", "--model", f"ct2={tmp_path / 'ct2'}",
        "--generate-args=--tokenizer moses", "--post-process", "none", "--cpu", "--repeats", "1", "--output-dir", out)
    detok = MosesDetokenizer("tgt")
    tokenized = [" ".join(MOSES.get(w, w) for w in line.split()) for line in (raw_dir / "test.tgt").read_text().splitlines()]
    references = [line.split("\t")[2] for line in (out / "sentences.tsv").read_text().splitlines()[1:]]
    assert references == [detok.detokenize(line.split()) for line in tokenized] and references != tokenized
    hyps = {name: (out / f"{name}.hyp").read_text().splitlines() for name in ("teacher", "ct2")}
    for name, lines in hyps.items():
        assert sum("-" in h or "&" in h for h in lines) >= 5, name
        assert not any(re.search(r"(^| )(@-@|&amp;)( |$)", h) for h in lines), (name, lines)
    assert sum(a == b for a, b in zip(*hyps.values())) >= 16, "the same beam search in float32"
    rows = json.loads((out / "bench.json").read_text())["models"]
    assert rows[0]["bleu"] > 20 and abs(rows[1]["bleu"] - rows[0]["bleu"]) < 5
