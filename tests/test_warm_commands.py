"""The suite's commands started warm (tests/warm_commands.py) do what they do started from their scripts."""
import os
import re
import subprocess
import time

import torch

from utils import BIN, TINY_DIMS, TRAIN_FLAGS, USER_DIR, run

import warm_commands

from fairseq_wd.checkpoints import load_state


def progress(log):
    """fairseq's metric lines (train_inner, train, valid) without their times and speeds."""
    lines = re.findall(r"\| (?:train_inner|train|valid) \| .*$", log, re.M)
    return [re.sub(r"\| (wps|ups|wall|train_wall) [\d.]+ ?", "", line) for line in lines]


def test_a_training_started_warm_ends_as_one_started_cold(data_bin, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    assert warm_commands.run_warm("no-such-command", [], env, USER_DIR) is None, "no console script of this venv"
    assert warm_commands.run_warm("fairseq-train", ["--help"], dict(env, PYTHONPATH=USER_DIR), USER_DIR) is None
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


def test_a_command_started_by_the_client_dies_with_it(data_bin, teacher):
    """warm_client.py (how the pipeline's commands start warm in the tests): the command's output is the
    client's, and a kill -9 of the client (as of the pipeline's process group) kills the command too."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **warm_commands.launcher_environment())
    server = warm_commands._server["process"].pid
    client = subprocess.Popen([*warm_commands.CLIENT, os.path.join(BIN, "fairseq-interactive"),
                               data_bin, "--user-dir", USER_DIR, "--path", teacher, "--cpu", "--beam", "2"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env=env)
    client.stdin.write("ana are mere\n")
    client.stdin.flush()
    hypothesis = next(line for line in client.stdout if line.startswith("H-0")).split("\t")[2]
    assert set(hypothesis.split()) <= {"ANA", "ERA", "EREM"}, hypothesis
    command, = children(server)
    client.kill()
    client.wait()
    deadline = time.time() + 10
    while command in children(server):
        assert time.time() < deadline, "the command outlived its client"
        time.sleep(0.05)


def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(child) for child in f.read().split()]
