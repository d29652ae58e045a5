"""fairseq-wd-bench, fairseq-wd-export --to ctranslate2 and fairseq-wd-pipeline through their console
scripts, on the toy language."""
import filecmp
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

import warm_commands
from utils import BIN, run, toy_pair
from test_gpu_check import gpu_check

from fairseq import options
from fairseq_wd.cli.pipeline import get_parser
from fairseq_wd.pipeline import allocator, inputs
from fairseq_wd.pipeline.experiment import METHODS, Pipeline
from fairseq_wd.recipes import RECIPES

import torch

import fairseq_wd  # noqa: F401
from fairseq import checkpoint_utils
from fairseq_wd.datasets.data_bin import dictionaries
from fairseq_wd.shortlist import vmap as sl


def test_bench_compares_fairseq_and_ctranslate2(data_bin, raw_dir, teacher, tmp_path):
    """Also --shortlist: after every row its shortlist row; with every target allowed, fairseq and float32
    CTranslate2 decode as without it. The int8 folder holds the file (export --vmap), the f32 one is
    decoded through a folder of links."""
    run("fairseq-wd-export", teacher, "--to", "ctranslate2", "--quantization", "none", "--output", tmp_path / "f32")
    full = run("fairseq-wd-export", teacher, "--to", "ctranslate2", "--output", tmp_path / "int8",
               disk_full_at=20_000, check=False)
    assert full.returncode != 0 and "int8: File too large" in full.stderr
    assert sorted(os.listdir(tmp_path)) == ["f32"], "no half-written model folder that a rerun would take as done"
    vmaps = tmp_path / "vmaps"
    vmaps.mkdir()
    tgt_dict = dictionaries(str(data_bin), "src", "tgt")[1]
    whole = str(vmaps / "whole.txt")  # every target always allowed: decodes as without a shortlist
    sl.write_vmap(sl.Vmap(always=tgt_dict.symbols[tgt_dict.nspecial:]), whole, tgt_dict=tgt_dict)
    (vmaps / "broken.txt").write_text("\tANA\nana\tANA\nmere\tEREM ZORBAX\n")
    broken = run("fairseq-wd-export", teacher, "--to", "ctranslate2", "--vmap", vmaps / "broken.txt",
                 "--output", tmp_path / "int8", check=False)
    assert broken.returncode != 0 and "broken.txt, line 3: target 'ZORBAX'" in broken.stderr
    assert not os.path.exists(tmp_path / "int8")
    run("fairseq-wd-export", teacher, "--to", "ctranslate2", "--vmap", whole, "--output", tmp_path / "int8")
    out = tmp_path / "bench"
    proc = run("fairseq-wd-bench", data_bin, "--model", f"teacher={teacher}", "--model", f"ct2={tmp_path / 'f32'}",
               "--model", f"ct2int8={tmp_path / 'int8'}", "--references", raw_dir / "test.tgt", "--shortlist", whole,
               "--post-process", "none", "--cpu", "--repeats", "2", "--output-dir", out)
    report = json.load(open(out / "bench.json"))
    rows = {m["name"]: m for m in report["models"]}
    hyps = {name: open(out / f"{name}.hyp").read().splitlines() for name in rows}
    assert list(rows) == [n + s for n in ("teacher", "ct2", "ct2int8") for s in ("", " + shortlist")]
    assert hyps["teacher + shortlist"] == hyps["teacher"]
    # CTranslate2 4.8.5 scores a beam over the vmap's rows a little differently (one hypothesis' score moved by
    # 0.005 here), which can swap two close hypotheses: nearly every sentence, not every one, decodes alike
    assert sum(a == b for a, b in zip(hyps["ct2 + shortlist"], hyps["ct2"])) >= len(hyps["ct2"]) - 1
    assert rows["teacher + shortlist"]["plain"] == "teacher" and len(rows["ct2int8 + shortlist"]["runs"]) == 2
    assert filecmp.cmp(tmp_path / "int8" / "vmap.txt", whole, shallow=False), "export copied the shortlist in"
    assert os.listdir(out / "shortlist-ct2") == ["row4.seed1"], "a folder of links for f32 only: int8 holds it"
    assert os.path.islink(out / "shortlist-ct2" / "row4.seed1" / "model.bin")
    shortlist, = report["shortlists"]
    assert shortlist["candidates_share"] == 1.0 and shortlist["coverage"] == 1.0
    assert shortlist["candidates_mean"] == len(tgt_dict) and shortlist["reference_tokens"] > 100
    cost = {r["row"]: r for r in shortlist["rows"]}
    teacher_sl = cost["teacher + shortlist"]
    assert teacher_sl["bleu_cost"] == 0 and teacher_sl["speedup_vs_teacher_shortlist"] is None
    assert cost["ct2int8 + shortlist"]["speedup_vs_teacher"] == rows["ct2int8 + shortlist"]["speedup"]
    tests = {(t["model"], t["baseline"]): t for t in report["significance"]}
    assert tests[("ct2int8 + shortlist", "ct2int8")]["bleu"]["p"] > 0.05
    md = (out / "bench.md").read_text()
    assert f"Shortlist {whole} (rows `NAME + shortlist`" in md
    assert f"holds on average {len(tgt_dict)} of the {len(tgt_dict)} target" in md
    assert re.search(r"^\| #4 ct2 \+ shortlist \| [+-]\d+\.\d\d \| ", md, re.M)
    assert abs(cost["ct2 + shortlist"]["bleu_cost"]) < 1
    assert report["settings"]["sentences"] == 20 and report["settings"]["beam"] == 6
    assert "tok:13a" in report["settings"]["sacrebleu"] and "tok:13a" in proc.stdout
    assert rows["teacher"]["bleu"] > 20, "the toy teacher translates, so its BLEU is far above 0"
    assert rows["teacher"]["speedup"] == 1.0 and len(rows["teacher"]["runs"]) == 2
    models, _ = checkpoint_utils.load_model_ensemble([str(teacher)])
    assert rows["teacher"]["params"] == sum(p.numel() for p in models[0].parameters())
    assert rows["teacher"]["weights_bytes"] == 4 * rows["teacher"]["params"], "float32 weights, no optimizer state"
    same = sum(a == b for a, b in zip(hyps["teacher"], hyps["ct2"]))
    assert same >= 18, f"float32 CTranslate2 agrees with fairseq's beam on {same}/20 sentences"
    assert abs(rows["ct2"]["bleu"] - rows["teacher"]["bleu"]) < 2
    assert len(hyps["ct2int8"]) == 20 and rows["ct2int8"]["weights_mb"] < rows["ct2"]["weights_mb"]
    assert md.count("| ct2") == 4 and (out / "bench.png").stat().st_size > 1000
    again = run("fairseq-wd-export", teacher, "--to", "ctranslate2", "--output", tmp_path / "f32", check=False)
    assert again.returncode != 0 and "exists" in again.stderr


def test_missing_ctranslate2_is_named(teacher, tmp_path):
    code = ("import sys; sys.modules['ctranslate2'] = None; from fairseq_wd.cli.export import main; "
            f"main([{str(teacher)!r}, '--to', 'ctranslate2', '--output', {str(tmp_path / 'x')!r}])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0 and "pip install 'fairseq-wd[deploy]'" in proc.stderr
    assert not os.path.exists(tmp_path / "x")


def test_bench_refuses_references_of_another_length(data_bin, raw_dir, teacher, tmp_path):
    short = tmp_path / "short.ref"
    short.write_text("".join(open(raw_dir / "test.tgt").readlines()[:5]))
    proc = run("fairseq-wd-bench", data_bin, "--model", f"teacher={teacher}", "--references", short, "--cpu",
               "--output-dir", tmp_path / "b", check=False)
    assert proc.returncode != 0 and "has 5 lines" in proc.stderr
    proc = run("fairseq-wd-bench", data_bin, "--model", "teacher", "--cpu", check=False)
    assert proc.returncode != 0 and "NAME=CHECKPOINT" in proc.stderr


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A corpus with its own valid (TSV) and test (two files) sets, as WMT's newstest: pipeline options."""
    folder = tmp_path_factory.mktemp("corpus")
    rng = random.Random(7)
    tsv, valid = folder / "toy.tsv", folder / "valid.tsv"
    tsv.write_text("".join("\t".join(toy_pair(rng)) + "\n" for _ in range(380)))
    valid.write_text("".join("\t".join(toy_pair(rng)) + "\n" for _ in range(10)))
    test = [toy_pair(rng) for _ in range(10)]
    for side, lang in enumerate(("src", "tgt")):
        (folder / f"test.{lang}").write_text("".join(pair[side] + "\n" for pair in test))
    return ["--tsv", tsv, "--source-lang", "src", "--target-lang", "tgt", "--valid-tsv", valid,
            "--test-source", folder / "test.src", "--test-target", folder / "test.tgt",
            "--update-scale", str(PIPELINE_UPDATES / RECIPES["demo"].student_updates), "--bench-repeats", "1",
            "--train-args=--max-tokens 600"]


PIPELINE_UPDATES = 20  # per student; WD: 10 + 10


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory):
    """The pipeline run once from start to end, its students two at a time: (its work dir, its output).
    The reruns below without --jobs find every step done (the same keys), and the killed run, one
    student at a time, gives the same hypotheses and curves. This run and every command it runs start
    in new interpreters, as for a user (the suite's other pipelines start their commands warm)."""
    folder = tmp_path_factory.mktemp("pipeline")
    proc = run("fairseq-wd-pipeline", *corpus, "--methods", "wd,kd,layer-copy", "--work-dir", folder / "work",
               "--pack-teacher", folder / "packed", "--jobs", "2", fresh=True)
    return folder, proc.stdout


def test_pipeline_runs_every_student_and_resumes(corpus, uninterrupted):
    tmp_path, stdout = uninterrupted
    n = PIPELINE_UPDATES
    report = json.load(open(tmp_path / "work" / "bench" / "bench.json"))
    names = [m["name"] for m in report["models"]]
    kd, wd = "TINY KD (orig+teacher-out, CE)", "TINY WD (orig+teacher-out, generator then CE)"
    assert names == ["teacher", kd, wd, *(f"{row}, CTranslate2 {kind}" for row in ("teacher", kd, wd)
                                          for kind in ("int8", "float32"))]
    assert "teacher layers cannot be copied" in stdout
    assert (tmp_path / "work" / "raw" / "test.tgt").read_text() == open(corpus[corpus.index("--test-target") + 1]).read()
    assert report["settings"]["sentences"] == 10
    assert all(m["size_ratio"] < 1 for m in report["models"][1:3])
    assert report["settings"]["max_len_a"] == 1.5 and report["settings"]["max_len_b"] == 10
    results = (tmp_path / "work" / "results.md").read_text()
    bench_md = (tmp_path / "work" / "bench" / "bench.md").read_text()
    assert bench_md.split("\n\n")[0].count("| TINY") == 2 + 4, "fairseq rows, CTranslate2 int8 and float32 rows"
    assert results.split("Learning curves")[1].count("| TINY") == 2, "a learning curve per student"
    assert "| teacher | " in results.split("Learning curves")[1], "the teacher trained here has its curve"
    assert "KD is the WD paper's KD baseline" in results and "Learning curves on valid" in results
    assert "| best valid BLEU (update) | bleu stopped improving (20% of the updates) |" in results, "no --patience"
    assert stdout.count("its output: ") == 3, "each student's training writes to its own log only"
    stopping = [line.split(" | ")[0][2:] for line in results.split("| training |")[1].splitlines()[2:]
                if line.startswith("|")]
    assert stopping == ["teacher", "tiny_kd_seed1", "tiny_wd_phase1_seed1", "tiny_wd_phase2_seed1"]
    assert "Data: test: 10 pairs; valid: 10 pairs; train: 380 pairs" in results
    curves = json.load(open(tmp_path / "work" / "bench" / "curves.json"))
    wd = [p["update"] for p in curves["curves"]["TINY WD (orig+teacher-out, generator then CE)"]]
    assert wd[-1] == n and any(u <= n // 2 for u in wd), "WD's curve spans phase 1 and phase 2"
    assert all("bleu" in p for p in curves["curves"]["TINY KD (orig+teacher-out, CE)"])
    assert (tmp_path / "work" / "bench" / "curves.png").stat().st_size > 1000
    assert os.path.exists(tmp_path / "work" / "tiny_wd_phase1_seed1" / "student.pt")
    packed = torch.load(tmp_path / "packed" / "checkpoint.pt", weights_only=True)
    assert packed["cfg"]["model"]["arch"] == "transformer"
    assert {t.dtype for t in packed["model"].values()} == {torch.float16}
    assert sorted(os.listdir(tmp_path / "packed")) == ["checkpoint.pt", "dict.txt", "spm.model"]
    again = run("fairseq-wd-pipeline", *corpus, "--methods", "wd,kd,layer-copy", "--work-dir", tmp_path / "work")
    assert "+ fairseq-" not in again.stdout and "redoing" not in again.stdout
    assert again.stdout.count("done already") == 13, ("data, teacher, its output, 2 students, WD export, 2 students "
                                                       "to ship, 3 CTranslate2, bench")
    assert not os.path.exists(tmp_path / "work" / "stale")
    assert os.path.exists(tmp_path / "work" / "ct2" / "tiny_wd_seed1" / "model.bin")
    assert (tmp_path / "work" / "results.md").read_text() == results
    # a changed setting redoes its step and every step after it, and says why; the rest stays
    changed = run("fairseq-wd-pipeline", *corpus, "--methods", "wd,kd,layer-copy", "--work-dir", tmp_path / "work",
                  "--wd-args=--wd-separate-transforms")
    redone = [line for line in changed.stdout.splitlines() if line.startswith("redoing")]
    assert "'--wd-separate-transforms' added" in redone[0] and "tiny_wd_phase1_seed1:" in redone[0]
    assert [line.split(":")[0].split(os.sep)[-1] for line in redone] == [
        "tiny_wd_phase1_seed1", "tiny_wd_phase2_seed1", "tiny_wd_phase2_seed1.pt", "tiny_wd_seed1", "bench"], \
        "the export went with phase 1"
    assert "input $WORK/tiny_wd_phase1_seed1/student.pt was redone or changed" in redone[1]
    assert changed.stdout.count("+ fairseq-train") == 2 and f"done already: {tmp_path / 'work' / 'tiny_kd_seed1'}" in changed.stdout
    assert any(name.startswith("tiny_wd_phase1_seed1@") for name in os.listdir(tmp_path / "work" / "stale"))
    # back to the first settings: their outputs are taken back from stale/, nothing is trained
    back = run("fairseq-wd-pipeline", *corpus, "--methods", "wd,kd,layer-copy", "--work-dir", tmp_path / "work")
    assert "+ fairseq-train" not in back.stdout and back.stdout.count("taken back from") == 5
    assert (tmp_path / "work" / "results.md").read_text() == results

def test_gpu_check_runs_its_cpu_parts(corpus, uninterrupted, tmp_path):
    """`gpu_check.sh --cpu` over a copy of the run above, with its options: the pipeline finds every step
    done, every part passes in fp32 on the CPU, the data-parallel step is skipped (no GPUs, no --ddp)."""
    shutil.copytree(uninterrupted[0] / "work", tmp_path / "check" / "pipeline", symlinks=True)
    proc = gpu_check(tmp_path, *corpus, "--test-size", "500", "--valid-size", "300")  # the pipeline's defaults
    lines = re.findall(r"^(PASS|FAIL|SKIP) ([^:(\n]+)", proc.stdout, re.M)
    assert proc.returncode == 0 and all(status != "FAIL" for status, _ in lines), proc.stdout + proc.stderr[-3000:]
    assert "+ fairseq-" not in (tmp_path / "check" / "pipeline.log").read_text(), "the copied run, not a new one"
    parts = [(status, part.strip()) for status, part in lines]
    assert parts == [("PASS", "pipeline"), ("PASS", "teacher"), ("PASS", "distill-data"), ("PASS", "KD student"),
                     ("PASS", "WD phase 1"), ("PASS", "WD phase 2"), ("PASS", "export"), ("PASS", "CTranslate2 on cpu"),
                     ("PASS", "bench"), ("SKIP", "DDP WD phase 1")], proc.stdout
    assert "PASS bench (footer: fairseq rows in fp32)" in proc.stdout
    assert re.search(r"^gpu_check: 9 passed, 0 failed, 1 skipped in \d+s on cpu$", proc.stdout, re.M)


def test_pipeline_data_of_a_given_teacher_uses_its_vocabulary(corpus, uninterrupted, tmp_path, monkeypatch):
    """A teacher given with its dictionary and sentencepiece model (here the one packed above): the
    corpus is encoded and binarized with those, not with a new vocabulary of the same size. Its command
    starts through $FAIRSEQ_WD_LAUNCHER."""
    launched = tmp_path / "launched.txt"
    monkeypatch.setenv("FAIRSEQ_WD_LAUNCHER", f"sh -c 'echo \"$@\" >> {launched}; exec \"$@\"' launcher")
    packed = uninterrupted[0] / "packed"
    args = get_parser().parse_args([*map(str, corpus), "--teacher", str(packed / "checkpoint.pt"),
                                    "--work-dir", str(tmp_path)])
    pipe = Pipeline(args)
    pipe.prepare(inputs.given_teacher(args, pipe.src, pipe.tgt))
    assert (tmp_path / "spm.model").read_bytes() == (packed / "spm.model").read_bytes()
    for lang in ("src", "tgt"):
        assert (tmp_path / "data-bin" / f"dict.{lang}.txt").read_text() == (packed / "dict.txt").read_text()
    assert launched.read_text().startswith(os.path.join(BIN, "fairseq-preprocess") + " --source-lang src ")


# kill -9 of the pipeline and the command it runs (its process group), as a crash or the OOM killer:
# once a line with the marker is printed and, for a training, once checkpoint_last.pt exists (a
# mid-training resume, or one at --max-update before the step was marked done)
KILLS = [("=== [1] corpus", None), ("+ fairseq-preprocess", None), ("/teacher ", "teacher"),
         ("+ fairseq-wd-distill-data", None), ("/tiny_wd_phase1_seed1 ", "tiny_wd_phase1_seed1"),
         ("+ fairseq-wd-export", None), ("/tiny_wd_phase2_seed1 ", "tiny_wd_phase2_seed1"), ("--to ctranslate2", None),
         ("+ fairseq-wd-bench", None)]


def kill_during(args, marker, training=None):
    """Runs the pipeline until `marker` (and `training`'s checkpoint_last.pt), then kills its process group."""
    work = args[args.index("--work-dir") + 1]
    proc = subprocess.Popen([os.path.join(BIN, "fairseq-wd-pipeline"), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1", **warm_commands.launcher_environment()))
    seen, lines = threading.Event(), []

    def read():  # drains the pipe, so that a command waiting to write does not stall
        for line in proc.stdout:
            lines.append(line)
            if marker in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.time() + 600
    while not (seen.is_set() and (training is None or os.path.exists(os.path.join(work, training, "checkpoint_last.pt")))):
        assert proc.poll() is None and time.time() < deadline, f"no kill at {marker!r}:\n{''.join(lines)[-3000:]}"
        time.sleep(0.05)
    time.sleep(0.3)  # into the step's work
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, f"the pipeline ended before the kill at {marker!r}"
    reader.join()


def test_pipeline_killed_at_every_step_resumes_to_the_same_table(corpus, uninterrupted, tmp_path):
    args = [*corpus, "--methods", "wd", "--work-dir", tmp_path / "work"]
    for marker, training in KILLS:
        kill_during(args, marker, training)
    run("fairseq-wd-pipeline", *args)
    bleu = {m["name"]: m["bleu"] for m in json.load(open(tmp_path / "work" / "bench" / "bench.json"))["models"]}
    reference = json.load(open(uninterrupted[0] / "work" / "bench" / "bench.json"))["models"]
    assert len(bleu) == 6 and bleu == {m["name"]: m["bleu"] for m in reference if m["name"] in bleu}
    curves, reference = (json.load(open(folder / "work" / "bench" / "curves.json")) for folder in (tmp_path, uninterrupted[0]))
    assert curves["teacher_valid_bleu"] == reference["teacher_valid_bleu"]
    for row, points in curves["curves"].items():
        assert points == reference["curves"][row], f"{row}: the killed run's validations differ"


def test_pipeline_commands_of_every_method(tmp_path, monkeypatch):
    """`--methods all --student small`: every training, checked by fairseq-train's own parser (the real
    runs are above and in the KD / WD / Pea-KD tests): the same total updates per row, and the KD
    baseline on the same data as WD."""
    pipe = Pipeline(get_parser().parse_args(["--work-dir", str(tmp_path), "--methods", "all", "--student", "small"]))
    pipe.cpu = True  # a CPU machine's, on Linux, where the user left glibc's allocator alone
    monkeypatch.setattr(sys, "platform", "linux")
    for name in [k for k in os.environ if k.startswith("MALLOC_") or k == "GLIBC_TUNABLES"]:
        monkeypatch.delenv(name)
    commands, environments = [], {}

    def sh(*cmd, log=None, env=None):
        commands.append([str(c) for c in cmd])
        environments.setdefault(cmd[0], []).append(env)

    monkeypatch.setattr(pipe, "sh", sh)
    models = pipe.students("teacher.pt", "kd-bin")
    assert list(models) == ["SMALL " + row for rows in METHODS.values() for row in rows]
    trainings = {c[c.index("--save-dir") + 1].split(os.sep)[-1]: options.parse_args_and_arch(
        options.get_training_parser(), c[1:]) for c in commands if c[0] == "fairseq-train"}
    n = RECIPES["demo"].student_updates
    assert sum(a.max_update for a in trainings.values()) == n * len(models), "the same updates for every row"
    assert all(name.startswith("small_") and name.endswith("_seed1") for name in trainings), "folders per size and seed"
    trainings = {name[len("small_"):-len("_seed1")]: a for name, a in trainings.items()}
    assert trainings["wd_phase1"].max_update + trainings["wd_phase2"].max_update == n
    kd, wd1, wd2 = trainings["kd"], trainings["wd_phase1"], trainings["wd_phase2"]
    assert kd.extra_train_data == wd1.extra_train_data == wd2.extra_train_data == "kd-bin"
    assert kd.data == wd1.data == wd2.data and kd.criterion == wd2.criterion == "label_smoothed_cross_entropy"
    assert trainings["seq_kd"].data == "kd-bin" and trainings["scratch"].task == "translation"
    assert ["fairseq-wd-init-student", "fairseq-wd-export"] == [c[0] for c in commands if c[0] != "fairseq-train"]
    assert environments["fairseq-train"] == [allocator.KEEP_FREED_MEMORY] * len(trainings), "CPU trainings"
    assert environments["fairseq-wd-export"] == environments["fairseq-wd-init-student"] == [None]


def test_a_failed_step_is_named_by_its_command(corpus, tmp_path):
    """Through FAIRSEQ_WD_LAUNCHER (set by `run`), the message names the fairseq command, not the launcher."""
    proc = run("fairseq-wd-pipeline", *corpus, "--work-dir", tmp_path, "--train-args=--no-such-option", check=False)
    assert proc.returncode == 1 and "fairseq-wd-pipeline: step failed (fairseq-train " in proc.stderr, proc.stderr[-2000:]
    assert "--no-such-option" in proc.stderr


def test_pipeline_refuses_unknown_methods(tmp_path):
    proc = run("fairseq-wd-pipeline", "--methods", "kd,wdd", "--work-dir", tmp_path, check=False)
    assert proc.returncode != 0 and "unknown ['wdd']" in proc.stderr and "pea-kd" in proc.stderr
    assert os.listdir(tmp_path) == []
