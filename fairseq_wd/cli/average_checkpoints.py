"""`fairseq-wd-average-checkpoints`: the teacher's last N checkpoints averaged into one, as the WD
authors do before distilling.

fairseq's own `scripts/average_checkpoints.py` is not part of its pip package; this is the same
average (parameters summed in float and divided by N, everything else from the newest checkpoint),
read with fairseq's weights-only loader and written aside then renamed, never over an existing file.

    fairseq-wd-average-checkpoints --inputs checkpoints/teacher --num-epoch-checkpoints 5 \\
        --output checkpoints/teacher/checkpoint.avg5.pt
"""
import argparse
import os
import re
import sys

import torch
from omegaconf import OmegaConf

from ..checkpoints import CheckpointError, load_state

PATTERNS = {"epoch": re.compile(r"^checkpoint(\d+)\.pt$"), "update": re.compile(r"^checkpoint_\d+_(\d+)\.pt$")}


def last_checkpoints(folder, n, kind):
    """The n newest epoch (checkpointN.pt) or update (checkpoint_E_U.pt) checkpoints of a save dir."""
    numbered = sorted(((int(m.group(1)), name) for name in os.listdir(folder)
                       for m in [PATTERNS[kind].match(name)] if m), reverse=True)
    if len(numbered) < n:
        flag = "--keep-last-epochs" if kind == "epoch" else "--save-interval-updates with --keep-interval-updates"
        raise CheckpointError(f"{folder} holds {len(numbered)} {kind} checkpoints, {n} are needed: train with "
                              f"{flag} {n} (and without --no-epoch-checkpoints), or lower the number.")
    return [os.path.join(folder, name) for _, name in numbered[:n]]


def average(paths):
    """The newest state (paths[0]) with every floating model tensor replaced by the mean over all paths,
    read one checkpoint at a time (optimizer states of big models do not fit N times in memory)."""
    state = load_state(paths[0], "checkpoint to average")
    sums = {k: v.float() for k, v in state["model"].items() if v.is_floating_point()}
    for path in paths[1:]:
        model = load_state(path, "checkpoint to average")["model"]
        if model.keys() != state["model"].keys():
            raise CheckpointError(f"{path} has other parameters than {paths[0]}: only checkpoints of one "
                                  "training (one architecture) can be averaged.")
        for k in sums:
            sums[k] = sums[k] + model[k].float()
    for k, total in sums.items():
        state["model"][k] = (total / len(paths)).to(state["model"][k].dtype)
    if OmegaConf.is_config(state.get("cfg")):  # as fairseq's trainer saves it: plain containers
        state["cfg"] = OmegaConf.to_container(state["cfg"], resolve=True, enum_to_str=True)
    return state


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inputs", nargs="+", required=True,
                   help="checkpoint files, or one save dir with --num-epoch/update-checkpoints")
    p.add_argument("--output", required=True, help="averaged checkpoint to write (must not exist)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--num-epoch-checkpoints", type=int, help="average the last N checkpointN.pt of the dir")
    group.add_argument("--num-update-checkpoints", type=int, help="average the last N checkpoint_E_U.pt of the dir")
    a = p.parse_args(argv)
    if os.path.exists(a.output):
        sys.exit(f"error: {a.output} exists; remove it or choose another --output (it is never overwritten).")
    n, kind = (a.num_epoch_checkpoints, "epoch") if a.num_epoch_checkpoints else (a.num_update_checkpoints, "update")
    try:
        if n:
            if len(a.inputs) != 1 or not os.path.isdir(a.inputs[0]):
                raise CheckpointError(f"--num-{kind}-checkpoints takes one save dir as --inputs, got {a.inputs}")
            paths = last_checkpoints(a.inputs[0], n, kind)
        else:
            paths = a.inputs
        state = average(paths)
    except CheckpointError as e:
        sys.exit(f"error: {e}")
    tmp = a.output + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, a.output)
    print(f"averaged {len(paths)} checkpoints into {a.output}:\n  " + "\n  ".join(paths))


if __name__ == "__main__":
    main()
