"""Reading and writing fairseq checkpoints with errors a user can act on.

`save_plain_transformer` writes the student a user ships: one file that vanilla fairseq (fairseq-generate,
fairseq-interactive, the hub interface) and CTranslate2's `ct2-fairseq-converter` load with
`torch.load(weights_only=True)` and no `--user-dir`: model `transformer` with every dimension explicit,
task `translation`, the config as plain containers, no optimizer or trainer state (`plain_checkpoint`).
"""
import argparse
import collections
import contextlib
import dataclasses
import errno
import os

import torch
from fairseq import checkpoint_utils
from fairseq.models.transformer.transformer_legacy import TransformerModel, base_architecture


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
    """`value` in containers and types a weights-only load accepts (dict, list, str, numbers, None)."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # a numpy or torch scalar
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


MULTILINGUAL = "translation_multi_simple_epoch"


def transformer_options():
    """The model options of vanilla fairseq's `transformer`: its command-line options and what its
    base_architecture sets."""
    parser = argparse.ArgumentParser(add_help=False)
    TransformerModel.add_args(parser)
    filled = argparse.Namespace()
    base_architecture(filled)
    return {a.dest for a in parser._actions} | set(vars(filled))


def plain_task_config(task_cfg):
    """A task config as vanilla fairseq's `translation` (its own options, no --eval-bleu settings), or a
    multilingual one (translation_multi_simple_epoch, whose options the caller chose) as given."""
    from fairseq.tasks.translation import TranslationConfig

    task = _plain(task_cfg) if task_cfg is not None else {}
    if str(task.get("_name", "")).endswith("multi_simple_epoch"):
        return task
    known = {f.name for f in dataclasses.fields(TranslationConfig)}
    plain = {k: v for k, v in task.items() if k in known and not k.startswith("eval_")
             and not (isinstance(v, str) and v.startswith("${")) and isinstance(v, (str, int, float, bool, type(None)))}
    plain["_name"] = "translation"
    return plain


def plain_model_config(args, task):
    """The model config of fairseq's `transformer` (every dimension explicit) from `args`, the model's
    Namespace of any registered arch, as a collections.OrderedDict whose entries are also its attributes.
    fairseq reads the entries (it turns cfg["model"] into a DictConfig); CTranslate2's converter reads
    `checkpoint["args"] or checkpoint["cfg"]["model"]` and sets and reads attributes on it (args.data = ...,
    fairseq.tasks.setup_task(args)), as on a Namespace. An OrderedDict is the one mapping with attributes that
    torch.load(weights_only=True) rebuilds; a Namespace it refuses. The task's name, data and languages
    are in it too, as in the model Namespace of a command-line training, which the converter sets up its task from."""
    args = argparse.Namespace(**{k: _plain(v) for k, v in vars(args).items()})
    base_architecture(args)
    config = {k: getattr(args, k) for k in sorted(transformer_options()) if hasattr(args, k)}
    config.update(_name="transformer", arch="transformer", task=task.get("task") or task["_name"],
                  data=task.get("data"), source_lang=task.get("source_lang"), target_lang=task.get("target_lang"))
    model = collections.OrderedDict(config)
    model.__dict__.update(config)
    return model


def default_config():
    """fairseq's whole config (FairseqConfig) at its defaults, as plain containers, model and task unset."""
    from fairseq.dataclass.configs import FairseqConfig
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(FairseqConfig), resolve=True, enum_to_str=True)


def plain_checkpoint(model_state, args, task_cfg=None, dtype=torch.float32):
    """The dict `save_plain_transformer` writes: the weights, and fairseq's config as plain containers:
    every section fairseq's loaders and the hub interface read (dataset, generation, tokenizer, ...) at
    fairseq's defaults, model and task the student's. `args: None` and the stubs `optimizer_history`,
    `extra_state` and `criterion` are what fairseq's and CTranslate2's loaders index unconditionally: no
    optimizer, scheduler or data-iterator state."""
    task = plain_task_config(task_cfg)
    cfg = default_config()
    cfg.update(model=plain_model_config(args, task), task=task)
    return {
        "args": None,
        "cfg": cfg,
        "model": {k: v.detach().to(dtype).cpu().contiguous() for k, v in model_state.items()},
        "optimizer_history": [{"criterion_name": "LabelSmoothedCrossEntropyCriterion",
                               "optimizer_name": "Adam", "lr_scheduler_state": {}, "num_updates": 0}],
        "criterion": {},  # fairseq-train --finetune-from-model reads it when the criterion has parameters
        "extra_state": {"train_iterator": {"epoch": 1}},
        "last_optimizer_state": None,
    }


def save_plain_transformer(path, model_state, args, task_cfg=None, dtype=torch.float32):
    """Writes a checkpoint of fairseq's `transformer` with explicit dimensions (`plain_checkpoint`).

    `args` is the student's model Namespace (any registered arch); its model values are kept, the arch
    becomes `transformer` and base_architecture fills anything unset; `task_cfg` (the training's task
    config, dict, DictConfig or Namespace) becomes `translation`'s options. `dtype=torch.float16` halves
    the file for shipping; fairseq casts it back when loading into a float32 model."""
    save_whole(plain_checkpoint(model_state, args, task_cfg, dtype), path)
