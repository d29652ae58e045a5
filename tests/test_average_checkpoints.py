"""fairseq-wd-average-checkpoints: the mean of the last N checkpoints, loadable by fairseq."""
import os
import shutil

import torch
from fairseq import checkpoint_utils

import fairseq_wd  # noqa: F401  (fairseq's loader with the plugin's fixes)
from utils import run


def test_averages_the_last_epoch_checkpoints(teacher, tmp_path):
    state = torch.load(teacher, map_location="cpu")  # weights only: the file as fairseq-train wrote it
    for epoch, scale in ((1, 10.0), (2, 1.0), (3, 3.0)):  # epoch 1 is not among the last two
        scaled = dict(state, model={k: v * scale if v.is_floating_point() else v for k, v in state["model"].items()})
        torch.save(scaled, tmp_path / f"checkpoint{epoch}.pt")
    shutil.copy(teacher, tmp_path / "checkpoint_last.pt")
    out = tmp_path / "avg.pt"
    proc = run("fairseq-wd-average-checkpoints", "--inputs", tmp_path, "--num-epoch-checkpoints", 2, "--output", out)
    assert "checkpoint3.pt" in proc.stdout and "checkpoint1.pt" not in proc.stdout
    models, _ = checkpoint_utils.load_model_ensemble([str(out)])
    averaged = models[0].state_dict()
    key = "decoder.layers.0.fc1.weight"
    assert torch.allclose(averaged[key], 2.0 * state["model"][key], atol=1e-6)

    again = run("fairseq-wd-average-checkpoints", "--inputs", tmp_path, "--num-epoch-checkpoints", 2,
                "--output", out, check=False)
    assert again.returncode != 0 and "never overwritten" in again.stderr
    few = run("fairseq-wd-average-checkpoints", "--inputs", tmp_path, "--num-epoch-checkpoints", 5,
              "--output", tmp_path / "avg5.pt", check=False)
    assert few.returncode != 0 and "holds 3 epoch checkpoints" in few.stderr and "--keep-last-epochs" in few.stderr
    assert not os.path.exists(tmp_path / "avg5.pt")
