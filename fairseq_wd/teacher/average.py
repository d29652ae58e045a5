"""The teacher's last N checkpoints averaged into one, as the WD authors do before distilling: the
average of fairseq's scripts/average_checkpoints.py (parameters summed in float and divided by N,
everything else from the newest checkpoint), read with fairseq's weights-only loader."""
import os
import re

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
