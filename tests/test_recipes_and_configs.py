"""The dataset recipes' processing half (no network) and the hydra configs, on tiny local data."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from fairseq_wd.checkpoints import load_state
from fairseq_wd.recipes import RECIPES
import warm_commands
from utils import BIN, REPO, USER_DIR, run

LINES = {
    "en": ["the house is red", "a new green house", "the old market is big", "apples and pears",
           "the small red apple", "a big new market"],
    "ro": ["casa este rosie", "o casa verde noua", "piata veche este mare", "mere si pere",
           "marul mic si rosu", "o piata mare noua"],
    "de": ["das haus ist rot", "ein neues gruenes haus", "der alte markt ist gross", "aepfel und birnen",
           "der kleine rote apfel", "ein grosser neuer markt"],
    "zh": ["房子是红色的", "一座新的绿房子", "旧市场很大", "苹果和梨", "小红苹果", "一个新的大市场"],
}


def local_raw(folder, src, tgt, extra_refs=0):
    os.makedirs(folder, exist_ok=True)
    for split, repeat in (("train", 10), ("valid", 1), ("test", 1)):
        for lang in (src, tgt):
            with open(os.path.join(folder, f"{split}.{lang}"), "w", encoding="utf-8") as f:
                f.writelines(line + "\n" for line in LINES[lang] * repeat)
    for r in range(1, extra_refs + 1):
        with open(os.path.join(folder, f"test.{tgt}{r}"), "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in LINES[tgt])


def prepare(recipe, work, local=None):
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", PYTHON=sys.executable, VOCAB="60")
    if local:
        env["LOCAL_RAW"] = str(local)
    return subprocess.run(["bash", os.path.join(REPO, "examples", recipe, "prepare.sh"), str(work)],
                          capture_output=True, text=True, env=env)


@pytest.mark.parametrize("recipe,src,tgt", [("wmt16_en_ro", "en", "ro"), ("wmt14_en_de", "en", "de"),
                                            ("nist_zh_en", "zh", "en")])
def test_prepare_binarizes_local_lines(recipe, src, tgt, tmp_path):
    local_raw(tmp_path / "local", src, tgt, extra_refs=3 if recipe == "nist_zh_en" else 0)
    proc = prepare(recipe, tmp_path / "work", tmp_path / "local")
    assert proc.returncode == 0, proc.stderr[-3000:]
    data_bin = tmp_path / "work" / "data-bin"
    assert open(data_bin / f"dict.{src}.txt").read() == open(data_bin / f"dict.{tgt}.txt").read()  # joint
    for split in ("train", "valid", "test"):
        assert os.path.getsize(data_bin / f"{split}.{src}-{tgt}.{tgt}.bin") > 0
    if recipe == "nist_zh_en":
        assert sorted(os.listdir(tmp_path / "work" / "raw")).count("test.en3") == 1
        assert "房" in open(tmp_path / "work" / "raw" / "spm.vocab", encoding="utf-8").read()
    again = prepare(recipe, tmp_path / "work", tmp_path / "local")
    assert again.returncode != 0 and "already holds a data-bin" in again.stderr


def test_nist_without_local_files_says_it_is_ldc_data(tmp_path):
    proc = prepare("nist_zh_en", tmp_path / "work")
    assert proc.returncode != 0 and "LDC" in proc.stderr and "LOCAL_RAW" in proc.stderr


SMALL_MODEL = ["model.encoder_embed_dim=32", "model.encoder_ffn_embed_dim=64", "model.encoder_layers=2",
               "model.encoder_attention_heads=4", "dataset.max_tokens=2000", "optimization.max_update=2",
               "common.cpu=true", "common.fp16=false", f"common.user_dir={USER_DIR}"]


@pytest.mark.parametrize("config,criterion", [("wd_phase1_tiny", "weight_distillation"), ("kd_tiny", "logit_kd"),
                                              ("pkd_small", "pkd")])
def test_hydra_config_trains(config, criterion, data_bin, teacher, tmp_path):
    proc = run("fairseq-hydra-train", "--config-dir", os.path.join(REPO, "hydra_configs"), "--config-name", config,
               f"task.data={data_bin}", f"task.teacher_path={teacher}", f"checkpoint.save_dir={tmp_path}",
               f"hydra.run.dir={tmp_path}/hydra", *SMALL_MODEL)
    log = proc.stdout + proc.stderr
    assert "num_updates 2" in log and "done training" in log
    assert f"'_name': '{criterion}'" in log
    assert os.path.exists(tmp_path / "checkpoint_last.pt")


def test_hydra_configs_are_generated_from_make_configs(tmp_path):
    subprocess.run([sys.executable, os.path.join(REPO, "hydra_configs", "make_configs.py"), str(tmp_path)], check=True)
    ours = sorted(f for f in os.listdir(os.path.join(REPO, "hydra_configs")) if f.endswith(".yaml"))
    assert ours == sorted(os.listdir(tmp_path)) and len(ours) == 27
    for name in ours:
        assert open(tmp_path / name).read() == open(os.path.join(REPO, "hydra_configs", name)).read(), name


def recipe_in_bash(name, *names, env=None):
    """The values `eval "$(fairseq-wd-recipe NAME)"` gives a script, one line per word of each variable."""
    script = f'eval "$({BIN}/fairseq-wd-recipe {name})"; ' + "; ".join(
        f'printf "%s\\n" "{n}:" "${{{n}[@]}}"' for n in names)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True,
                         env=dict(os.environ, **(env or {}))).stdout.splitlines()
    values, current = {}, None
    for line in out:
        if line.endswith(":") and line[:-1] in names:
            current = values.setdefault(line[:-1], [])
        else:
            current.append(line)
    return values


def test_the_paper_scripts_read_the_recipe_table():
    paper = RECIPES["paper"]
    got = recipe_in_bash("paper", "TEACHER_ARCH", "TEACHER_ARGS", "TRAIN_ARGS", "DISTILL_ARGS", "WD_PHASE2_ARGS",
                         "TEACHER_UPDATES", "STUDENT_UPDATES", "WD_PHASE1_UPDATES", "WD_PHASE2_UPDATES")
    assert ["--arch", *got["TEACHER_ARCH"], *got["TEACHER_ARGS"]] == paper.teacher
    assert got["TRAIN_ARGS"] == paper.train and got["DISTILL_ARGS"] == paper.distill
    assert got["WD_PHASE2_ARGS"] == paper.wd_phase2
    assert [int(got[n][0]) for n in ("TEACHER_UPDATES", "STUDENT_UPDATES", "WD_PHASE1_UPDATES",
                                     "WD_PHASE2_UPDATES")] == [100000, 60000, *paper.wd_phase_updates()]
    odd = recipe_in_bash("paper", "WD_PHASE1_UPDATES", "WD_PHASE2_UPDATES", env={"STUDENT_UPDATES": "7"})
    assert (int(odd["WD_PHASE1_UPDATES"][0]), int(odd["WD_PHASE2_UPDATES"][0])) == paper.wd_phase_updates(7)
    assert sum(paper.wd_phase_updates(7)) == 7


def test_hydra_configs_follow_the_paper_recipe():
    paper = RECIPES["paper"]

    def config(name):
        with open(os.path.join(REPO, "hydra_configs", f"{name}.yaml")) as f:
            return yaml.safe_load(f)

    lr = float(paper.train[paper.train.index("--lr") + 1])
    assert config("teacher_big")["optimization"]["max_update"] == paper.teacher_updates
    for size in ("tiny", "deep_small"):
        kd, pkd, wd1, wd2 = (config(f"{m}_{size}") for m in ("kd", "pkd", "wd_phase1", "wd_phase2"))
        assert kd["optimization"]["max_update"] == pkd["optimization"]["max_update"] == paper.student_updates
        assert wd1["optimization"]["max_update"] + wd2["optimization"]["max_update"] == paper.student_updates
        assert {c["optimization"]["lr"][0] for c in (kd, wd1, wd2)} == {lr}
        assert wd2["lr_scheduler"]["warmup_updates"] == 1000 and wd1["lr_scheduler"]["warmup_updates"] == 4000
        assert kd["criterion"]["kd_alpha"] == paper.kd_alpha and wd2["criterion"]["label_smoothing"] == 0.1
    assert config("kd_deep_tiny")["model"]["encoder_layers"] == 48


def test_paper_script_runs_a_recipe_end_to_end(data_bin, raw_dir, tmp_path):
    """examples/common/run_paper.sh with the demo recipe's settings, scaled down, on the toy data: every
    stage, WD's phases sharing the KD baseline's updates."""
    env = dict(os.environ, PATH=f"{warm_commands.client_folder()}:{BIN}:{os.environ['PATH']}", SRC="src", TGT="tgt",
               DATA=str(data_bin), WORK=str(tmp_path), RECIPE="demo", TEACHER_UPDATES="10", STUDENT_UPDATES="8", STUDENTS="tiny",
               FP16="0", DEVICE_ARGS="--cpu", BENCH_ARGS="--repeats 1", REFERENCES=str(raw_dir / "test.tgt"),
               **warm_commands.launcher_environment())
    script = os.path.join(REPO, "examples", "common", "run_paper.sh")
    proc = subprocess.run(["bash", script], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    with open(tmp_path / "bench" / "bench.json") as f:
        assert [m["name"] for m in json.load(f)["models"]] == ["teacher", "TINY KD", "TINY WD"]
    cfg = {name: load_state(str(tmp_path / name / "checkpoint_last.pt"))["cfg"]
           for name in ("teacher", "tiny_kd", "tiny_wd_phase1", "tiny_wd_phase2")}
    assert [c["optimization"]["max_update"] for c in cfg.values()] == [10, 8, 4, 4]
    assert {c["optimization"]["lr"][0] for c in cfg.values()} == {0.002}  # the demo recipe's
    assert cfg["tiny_kd"]["task"]["extra_train_data"] == cfg["tiny_wd_phase2"]["task"]["extra_train_data"]
