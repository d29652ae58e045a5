"""Each fairseq bug that fairseq_wd.compat patches shows with that patch turned off and not with it."""
import os
import subprocess
import sys

import pytest
import torch

from utils import REPO, TINY_DIMS, TRAIN_FLAGS, USER_DIR, run

from fairseq_wd import compat

NAMES = [fix.__name__ for fix in compat.PATCHES]
FAIRSEQ_TRAIN = ("stop_at_max_update", "resume_with_the_same_batches", "resume_patience")  # shown by fairseq-train runs, below
IN_ONE_PROCESS = [name for name in NAMES if name not in FAIRSEQ_TRAIN]


def bugs(checkpoint, turned_off=""):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "compat_bugs.py"), checkpoint],
                          env=dict(os.environ, FAIRSEQ_WD_NO_PATCH=turned_off), capture_output=True, text=True)
    return dict(line.split(": ") for line in proc.stdout.splitlines() if line.split(": ")[0] in NAMES), proc.stderr


def test_each_patch_fixes_a_bug_that_shows_without_it(teacher):
    found, log = bugs(teacher)
    assert found == {name: "fixed" for name in IN_ONE_PROCESS}
    assert f"fairseq-wd patched fairseq: {', '.join(NAMES)} (FAIRSEQ_WD_NO_PATCH" in log
    without, log = bugs(teacher, ",".join(NAMES))
    assert "patched" not in log
    expected = {name: "bug" for name in IN_ONE_PROCESS}
    if torch.cuda.is_available():  # fairseq's launcher only divides by zero GPUs
        del without["allow_cpu_data_parallel"], expected["allow_cpu_data_parallel"]
    assert without == expected


def test_unknown_patch_name_is_refused(monkeypatch):
    monkeypatch.setenv("FAIRSEQ_WD_NO_PATCH", "keep_last_batch,keep_lats_batch")
    with pytest.raises(ValueError, match="unknown patches .'keep_lats_batch'.*known: allow_fairseq"):
        compat.apply()


def test_a_resumed_or_rerun_training_ends_as_an_uninterrupted_one(data_bin, tmp_path):
    """resume_with_the_same_batches and stop_at_max_update, through fairseq-train: a training stopped at an
    epoch's end (a kill after its checkpoint) and resumed ends with the uninterrupted run's weights, and a
    rerun of a finished training changes nothing. With either patch off, fairseq's own behaviour shows."""
    def train(folder, *stop, env=None):
        return run("fairseq-train", data_bin, "--user-dir", USER_DIR, "--arch", "transformer", *TINY_DIMS,
                   "--save-dir", tmp_path / folder, *TRAIN_FLAGS, "--dropout", "0.1", *(stop or ["--max-update", "8"]),
                   env=env).stdout

    def state(folder):
        saved = torch.load(tmp_path / folder / "checkpoint_last.pt", weights_only=True)
        return saved["optimizer_history"][-1]["num_updates"], saved["model"]

    def same(a, b):
        return a[0] == b[0] and all(torch.equal(a[1][k], b[1][k]) for k in a[1])

    train("whole")
    for folder, env in (("resumed", None), ("fairseq", {"FAIRSEQ_WD_NO_PATCH": "resume_with_the_same_batches"})):
        train(folder, "--max-epoch", "1", env=env)
        assert state(folder)[0] < 8
        train(folder, env=env)
    assert same(state("resumed"), state("whole"))
    assert not same(state("fairseq"), state("whole")), "fairseq itself resumes on other batches"
    assert "nothing to train" in train("resumed") and same(state("resumed"), state("whole"))
    train("resumed", env={"FAIRSEQ_WD_NO_PATCH": "stop_at_max_update"})
    assert state("resumed")[0] == 9, "fairseq itself trains one update past --max-update"


def test_a_resumed_training_keeps_its_patience_count(data_bin, tmp_path):
    """resume_patience, through fairseq-train: with --maximize-best-checkpoint-metric on the falling valid
    loss, every validation after the first is worse, so --patience 2 stops at the third validation
    (update 6). A training stopped at update 4 and resumed stops there too; fairseq itself counts again."""
    def train(folder, max_update, env=None):
        out = run("fairseq-train", data_bin, "--user-dir", USER_DIR, "--arch", "transformer", *TINY_DIMS,
                  "--save-dir", tmp_path / folder, *TRAIN_FLAGS, "--max-update", max_update, "--patience", "2",
                  "--maximize-best-checkpoint-metric", "--validate-interval-updates", "2", "--save-interval-updates",
                  "2", "--validate-interval", "1000", "--save-interval", "1000", env=env).stdout
        saved = torch.load(tmp_path / folder / "checkpoint_last.pt", weights_only=True)
        return saved["optimizer_history"][-1]["num_updates"], "early stop" in out

    assert train("whole", 40) == (6, True)
    assert train("whole", 40)[0] == 6, "rerun after an early stop: nothing to train (fairseq itself goes on)"
    for folder, env, stop in (("resumed", None, 6), ("fairseq", {"FAIRSEQ_WD_NO_PATCH": "resume_patience"}, 10)):
        assert train(folder, 4, env) == (4, False)
        assert train(folder, 40, env) == (stop, True), folder
