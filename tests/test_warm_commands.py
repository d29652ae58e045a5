"""The suite's commands started warm (tests/warm_commands.py) do what they do started from their scripts."""
import re

import torch

from utils import TINY_DIMS, TRAIN_FLAGS, USER_DIR, run

import warm_commands

from fairseq_wd.checkpoints import load_state


def progress(log):
    """fairseq's metric lines (train_inner, train, valid) without their times and speeds."""
    lines = re.findall(r"\| (?:train_inner|train|valid) \| .*$", log, re.M)
    return [re.sub(r"\| (wps|ups|wall|train_wall) [\d.]+ ?", "", line) for line in lines]


def test_a_training_started_warm_ends_as_one_started_cold(data_bin, tmp_path):
    assert warm_commands.warm("fairseq-train", None) and not warm_commands.warm("fairseq-train", {"X": "1"})
    assert not warm_commands.warm("torchrun-of-nothing", None)
    args = [data_bin, "--user-dir", USER_DIR, "--arch", "wd_transformer_tiny", *TINY_DIMS, "--max-update", "6",
            "--criterion", "label_smoothed_cross_entropy", *TRAIN_FLAGS, "--dropout", "0.1"]
    warm = run("fairseq-train", *args, "--save-dir", tmp_path / "warm")
    cold = run("fairseq-train", *args, "--save-dir", tmp_path / "cold", fresh=True)
    assert "num_updates 6" in warm.stdout and len(progress(warm.stdout)) > 1
    assert progress(warm.stdout) == progress(cold.stdout)
    saved = [load_state(str(tmp_path / folder / "checkpoint_last.pt"))["model"] for folder in ("warm", "cold")]
    assert all(torch.equal(saved[0][name], saved[1][name]) for name in saved[1])


def test_a_refused_command_exits_as_its_script(tmp_path):
    warm = run("fairseq-wd-pipeline", "--methods", "kd,wdd", "--work-dir", tmp_path, check=False)
    cold = run("fairseq-wd-pipeline", "--methods", "kd,wdd", "--work-dir", tmp_path, check=False, fresh=True)
    assert warm.returncode == cold.returncode == 2 and warm.stderr == cold.stderr and "unknown ['wdd']" in warm.stderr
    crash = run("fairseq-wd-export", tmp_path / "missing.pt", "--output", tmp_path / "x", check=False)
    assert crash.returncode != 0 and "missing.pt" in crash.stderr
