"""Reading and writing fairseq checkpoints with errors a user can act on.

`save_plain_transformer` writes what vanilla fairseq (and CTranslate2's converter) can load with
`torch.load(weights_only=True)` and no `--user-dir`: model `transformer`, every dimension explicit,
the config as plain dicts.
"""
import argparse
import contextlib
import errno
import os

import torch
from fairseq import checkpoint_utils
from fairseq.models.transformer.transformer_legacy import base_architecture


class CheckpointError(ValueError):
    pass


DISK_ERRORS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES}  # full, over quota, read-only, no permission


class OutputError(OSError):
    """A file that could not be written (disk full, read-only folder); nothing half-written was kept."""


def output_error(path, error):
    """`error` as an OutputError naming `path` and the system's reason when an OSError caused it (torch
    hides it behind a RuntimeError), else None: a failure that is not the disk's."""
    cause, seen = error, set()
    while cause is not None and not isinstance(cause, OSError) and id(cause) not in seen:
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    if not isinstance(cause, OSError) or cause.errno not in DISK_ERRORS:
        return None
    return OutputError(f"cannot write {path}: {cause.strerror or cause}. Free disk space or choose a writable "
                       "folder, then rerun: nothing half-written was kept")


def save_whole(obj, path):
    """torch.save to PATH.tmp, then rename: a file at PATH is always complete, and a failed write leaves
    no file that a rerun would take as done."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except Exception as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        error = output_error(path, e)
        if error is None:
            raise
        raise error from e


def load_state(path, what="checkpoint", arg_overrides=None):
    """fairseq's own loader (weights-only, with the compat allow-list, config upgraded, `arg_overrides`
    applied to it), turning the usual failures into one clear message."""
    if not path or not os.path.isfile(path):
        raise CheckpointError(f"{what} not found: {path!r}. Pass the path of a fairseq checkpoint (.pt) file.")
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(path, arg_overrides)
    except Exception as e:  # truncated files, non-checkpoints, foreign pickles
        raise CheckpointError(
            f"{what} {path!r} cannot be read as a fairseq checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}). Is the file complete (not truncated by a killed copy)?"
        ) from e
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{what} {path!r} is not a fairseq checkpoint: it has no 'model' entry.")
    return state


def model_args(state):
    """The model config of a checkpoint as a Namespace (fairseq stores a Namespace or a dict)."""
    cfg = state.get("cfg") or {}
    model = cfg.get("model")
    if model is None and state.get("args") is not None:
        model = state["args"]
    if model is None:
        raise CheckpointError("checkpoint has no model config (cfg.model or args)")
    return argparse.Namespace(**(vars(model) if isinstance(model, argparse.Namespace) else dict(model)))


def task_config(state):
    """The task config of a checkpoint as a plain dict: a legacy task's (translation_multi_simple_epoch)
    is stored as a Namespace of every option, a dataclass task's as a dict or DictConfig."""
    from omegaconf import DictConfig, OmegaConf

    task = (state.get("cfg") or {}).get("task")
    if isinstance(task, argparse.Namespace):
        return dict(vars(task))
    if isinstance(task, DictConfig):
        return OmegaConf.to_container(task)
    return dict(task or {})


def _plain(value):
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def save_plain_transformer(path, model_state, args, task_cfg=None, dtype=torch.float32):
    """Writes a checkpoint of fairseq's `transformer` with explicit dimensions.

    `args` is the student's model Namespace (any registered arch); its values are kept, the arch
    becomes `transformer` and base_architecture fills anything unset. `dtype=torch.float16` halves the
    file for shipping; fairseq casts it back when loading into a float32 model."""
    args = argparse.Namespace(**vars(args))
    base_architecture(args)
    args.arch = args._name = "transformer"
    task = _plain(task_cfg) if task_cfg is not None else {"_name": "translation"}
    state = {
        "cfg": {"model": _plain(args), "task": task, "common": {}, "checkpoint": {}},
        "model": {k: v.detach().to(dtype).cpu().contiguous() for k, v in model_state.items()},
        "optimizer_history": [{"criterion_name": "LabelSmoothedCrossEntropyCriterion",
                               "optimizer_name": "Adam", "lr_scheduler_state": {}, "num_updates": 0}],
        "criterion": {},  # fairseq-train --finetune-from-model reads it when the criterion has parameters
        "extra_state": {"train_iterator": {"epoch": 1}},
        "last_optimizer_state": None,
    }
    save_whole(state, path)
