"""Early stopping and checkpoint choice, all of it fairseq's own: which valid metric chooses
checkpoint_best.pt and counts --patience (`selection_flags`), how often a training validates under
patience (`patience_flags`), and, read back from a finished training's log, what ended it (`stopped`).
A training killed and resumed keeps its patience count through compat.py's `resume_patience` fix."""
import os

SELECT_BY = ("bleu", "loss")  # what chooses checkpoint_best.pt and stops a training under --patience
PATIENCE_STOP = "early stop since valid performance hasn't improved"  # fairseq-train's log line


def selection_flags(select_by):
    """fairseq-train flags that make `select_by` choose checkpoint_best.pt and count --patience: "bleu",
    valid BLEU of --eval-bleu (--best-checkpoint-metric bleu --maximize-best-checkpoint-metric); "loss",
    fairseq's default (no flags)."""
    if select_by not in SELECT_BY:
        raise ValueError(f"select_by {select_by!r}: choose from {', '.join(SELECT_BY)}")
    return ["--best-checkpoint-metric", "bleu", "--maximize-best-checkpoint-metric"] if select_by == "bleu" else []


def selected_by(flags):
    """What `flags` (a training's fairseq-train options) choose checkpoint_best.pt by: "bleu" or "loss"."""
    return "bleu" if "--maximize-best-checkpoint-metric" in flags else "loss"


def validation_interval(updates, scale=1.0):
    """Updates between validations (and saves) under patience: `updates` scaled, at least 1."""
    return max(1, int(updates * scale))


def patience_flags(patience, every, keep_epoch_validations=False):
    """fairseq-train flags that stop a training after `patience` validations without a better selection
    metric, validating and saving every `every` updates (the last interval checkpoint kept); none when
    `patience` is 0. Validations stay on the update grid unless `keep_epoch_validations` (a teacher whose
    epoch checkpoints are averaged)."""
    if not patience:
        return []
    flags = ["--patience", str(patience), "--validate-interval-updates", str(every), "--save-interval-updates",
             str(every), "--keep-interval-updates", "1"]
    return flags if keep_epoch_validations else [*flags, "--validate-interval", "100000", "--save-interval", "100000"]


def stopped(log_path, cap):
    """What ended a training, from its train.log: {'by': 'patience' | 'the cap' | 'not finished', 'update'}."""
    from .pipeline.curves import read_validations  # the recipes import this module; curves draw with matplotlib

    if not os.path.exists(log_path):
        return {"by": "not finished", "update": None}
    with open(log_path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    points = read_validations(log_path)
    if PATIENCE_STOP in text:
        return {"by": "patience", "update": points[-1]["update"] if points else None}
    if "done training" in text or "nothing to train" in text:
        return {"by": "the cap", "update": cap}
    return {"by": "not finished", "update": points[-1]["update"] if points else None}
