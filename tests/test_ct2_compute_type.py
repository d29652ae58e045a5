"""CTranslate2's compute type: the bench decodes each CTranslate2 row at its own (--ct2-compute-type), and
the pipeline benches every CTranslate2 copy at int8 and float32 and reports it at the faster, both rows
where their BLEU differs."""
import json
import os

import ctranslate2
import pytest

from utils import kd_train, run

from fairseq_wd.bench import testset
from fairseq_wd.bench import run as bench_run
from fairseq_wd.cli import bench
from fairseq_wd.cli.pipeline import get_parser
from fairseq_wd.export import ct2
from fairseq_wd.pipeline.experiment import CT2_TYPES, Pipeline


@pytest.fixture(scope="module")
def int8_folder(data_bin, tmp_path_factory):
    """A few updates of a toy student (what it translates does not matter here), exported as int8."""
    folder = tmp_path_factory.mktemp("ct2types")
    kd_train(data_bin, folder / "train", updates=4)
    run("fairseq-wd-export", folder / "train" / "checkpoint_last.pt", "--to", "ctranslate2", "--quantization", "int8",
        "--output", folder / "int8")
    return folder / "train" / "checkpoint_last.pt", str(folder / "int8")


def test_bench_decodes_each_ctranslate2_row_at_its_compute_type(data_bin, int8_folder, tmp_path, monkeypatch):
    checkpoint, folder = int8_folder
    loaded = []

    class Recording(ctranslate2.Translator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            loaded.append((kwargs.get("compute_type"), self.compute_type))

    monkeypatch.setattr(ctranslate2, "Translator", Recording)
    common = [str(data_bin), "--model", f"s int8={folder}", "--model", f"s float32={folder}", "--repeats", "1",
              "--cpu", "--threads", "1", "--post-process", "none", "--output-dir", str(tmp_path)]
    report = bench_run.run(bench.get_parser().parse_args([*common, "--ct2-compute-type", "s int8=int8",
                                                      "--ct2-compute-type", "s float32=float32"]))
    assert report["settings"]["ct2_compute_types"] == {"s int8": "int8", "s float32": "float32"}
    assert sorted(set(loaded)) == [("float32", "float32"), ("int8", "int8_float32")], \
        "float32 converts the int8 weights on load and computes in float32"
    for name, kind in (("s int8", "int8"), ("s float32", "float32")):
        test = testset.TestSet(str(data_bin), "test", "none")
        outputs, _, _ = ct2.translate(folder, test.sources, test.batches(64), 6, 1.0, 1, compute_type=kind)
        assert (tmp_path / f"{name}.hyp").read_text().splitlines() == [test.detok(o) for o in outputs]
    loaded.clear()
    bench_run.run(bench.get_parser().parse_args([*common, "--ct2-compute-type", "float32"]))
    assert {given for given, _ in loaded} == {"float32"}, "a bare TYPE is every CTranslate2 row's"
    for given, why in ((["--ct2-compute-type", "s int8=int4"], "'int4' is not one of"),
                       (["--ct2-compute-type", "t=int8"], "no --model named 't'"),
                       (["--model", f"f={checkpoint}", "--ct2-compute-type", "f=int8"], "f is a fairseq row")):
        with pytest.raises(bench_run.BenchError, match=why):
            bench_run.run(bench.get_parser().parse_args([*common, *given]))


def test_export_takes_the_weight_type(int8_folder, tmp_path):
    checkpoint, int8 = int8_folder
    run("fairseq-wd-export", checkpoint, "--to", "ctranslate2", "--quantization", "none", "--output", tmp_path / "f32")
    assert os.path.getsize(tmp_path / "f32" / "model.bin") > os.path.getsize(os.path.join(int8, "model.bin"))
    assert ctranslate2.Translator(int8).compute_type.startswith("int8")
    assert ctranslate2.Translator(str(tmp_path / "f32")).compute_type == "float32"


def pipeline(tmp_path, monkeypatch, commands):
    pipe = Pipeline(get_parser().parse_args(["--work-dir", str(tmp_path), "--methods", "kd,wd"]))

    def sh(*cmd, log=None, env=None):
        commands.append([str(c) for c in cmd])
        if cmd[0] == "fairseq-wd-bench":
            os.makedirs(pipe.path("bench"), exist_ok=True)
            with open(pipe.path("bench", "bench.md"), "w") as f:
                f.write("table\n")

    monkeypatch.setattr(pipe, "sh", sh)
    monkeypatch.setattr(ct2, "require", lambda: None)
    return pipe


def test_pipeline_benches_each_ctranslate2_copy_at_int8_and_float32(tmp_path, monkeypatch):
    commands = []
    pipe = pipeline(tmp_path, monkeypatch, commands)
    kd, wd = pipe.row("kd"), pipe.row("wd")
    rows = pipe.ctranslate2({"teacher": ["t.pt"], kd: ["kd.pt"], wd: ["wd.pt"]})
    assert CT2_TYPES == ("int8", "float32")
    assert rows == {f"{name}, CTranslate2 {kind}": [pipe.path("ct2", folder)]
                    for name, folder in (("teacher", "teacher"), (kd, "tiny_kd_seed1"), (wd, "tiny_wd_seed1"))
                    for kind in CT2_TYPES}
    exports = [c for c in commands if c[0] == "fairseq-wd-export"]
    assert len(exports) == 3 and all(c[c.index("--quantization") + 1] == "int8" for c in exports), "one folder each"
    pipe.bench({"teacher": ["t.pt"], kd: ["kd.pt"], wd: ["wd.pt"], **rows})
    command = commands[-1]
    assert [c for c in command if c.startswith("--ct2-compute-type")] == [
        f"--ct2-compute-type={name}={kind}" for name in rows for kind in [name.rsplit(" ", 1)[1]]]
    assert f"--compare={wd}, CTranslate2 float32={kd}, CTranslate2 float32" in command
    parsed = bench.get_parser().parse_args(command[1:])
    assert len(parsed.ct2_compute_type) == 6 and len(parsed.model) == 9


def test_pipeline_reports_each_copy_at_the_faster_compute_type(tmp_path, monkeypatch):
    """Both rows stay in bench/bench.md; results.md leaves out the slower where both decode alike."""
    pipe = pipeline(tmp_path, monkeypatch, [])
    pipe.compute_types = {f"{name}, CTranslate2 {kind}": kind for name in ("teacher", "WD") for kind in CT2_TYPES}
    models = [{"name": "teacher", "bleu": 30.0, "chrf": 50.0, "sentences_per_s": 10.0},
              {"name": "teacher, CTranslate2 int8", "bleu": 30.0, "chrf": 50.0, "sentences_per_s": 171.0},
              {"name": "teacher, CTranslate2 float32", "bleu": 30.0, "chrf": 50.0, "sentences_per_s": 187.0},
              {"name": "WD, CTranslate2 int8", "bleu": 25.0, "chrf": 45.0, "sentences_per_s": 367.0},
              {"name": "WD, CTranslate2 float32", "bleu": 25.3, "chrf": 45.0, "sentences_per_s": 474.0}]
    os.makedirs(pipe.path("bench"))
    with open(pipe.path("bench", "bench.json"), "w") as f:
        json.dump({"models": models}, f)
    table = "\n".join(["| # | model |", "|---|---|", *(f"| {n} | {m['name']} | x |" for n, m in enumerate(models, 1)),
                       "| 6 | teacher, CTranslate2 int8 + shortlist | x |", "",
                       "| #2 teacher, CTranslate2 int8 | significance |"])
    shown = pipe.faster_compute_types(table)
    assert "| 2 | teacher, CTranslate2 int8 |" not in shown and "| 3 | teacher, CTranslate2 float32 |" in shown
    assert "| 6 | teacher, CTranslate2 int8 + shortlist |" not in shown, "its shortlist row goes with it"
    assert "| 4 | WD, CTranslate2 int8 |" in shown and "| 5 | WD, CTranslate2 float32 |" in shown
    assert "teacher: float32 187.0 sentences/s, int8 171.0 (the same BLEU and chrF" in shown
    assert "WD: float32 474.0 sentences/s, int8 367.0 (their BLEU differs: both rows shown)" in shown
