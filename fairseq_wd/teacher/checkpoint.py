"""The teacher: one object per process that reads its checkpoint once and serves every part that needs
it (the dictionary check, WD's generator, the KD criterions' model, the pipeline's checks)."""
import logging
import os

import torch
from fairseq import models

from ..checkpoints import CheckpointError, load_state, model_args

logger = logging.getLogger(__name__)
PREPROCESS_FLAG = {"source": "--srcdict", "target": "--tgtdict"}


class Teacher:
    """A teacher checkpoint: its weights and config, and its model built on first use (eval mode, no
    gradients). The optimizer state is dropped on reading, and the model takes over the weights, so
    they are held once."""

    def __init__(self, path):
        self.path = path
        self.state = load_state(path, "teacher checkpoint")
        self.state.pop("last_optimizer_state", None)
        self._model = None

    @property
    def weights(self):
        return self.state["model"] if self._model is None else self._model.state_dict()

    @property
    def args(self):
        return model_args(self.state)

    @property
    def decoder_layers(self):
        return len({k.split(".")[2] for k in self.weights if k.startswith("decoder.layers.")})

    def check_dictionaries(self, src_dict, tgt_dict, names=None, teacher_dicts=None):
        """The teacher's embedding tables must have one row per dictionary entry of the data. A checkpoint
        holds no dictionary, so that is all that can be checked unless `teacher_dicts` (from
        `teacher_dictionaries`) gives the teacher's own: then every symbol must be the same, in order."""
        sides = ("source", "target")
        names = names or [f"this data-bin's {side} dictionary" for side in sides]
        for i, (side, dictionary, name) in enumerate(zip(sides, (src_dict, tgt_dict), names)):
            key = f"{('encoder', 'decoder')[i]}.embed_tokens.weight"
            rows = self.weights[key].shape[0] if key in self.weights else len(dictionary)
            if rows != len(dictionary):
                raise CheckpointError(
                    f"teacher {self.path!r} was trained with a {side} dictionary of {rows} entries, but {name} has "
                    f"{len(dictionary)}: not the teacher's dictionary. Binarize the data with the teacher's "
                    "dictionaries: fairseq-preprocess --srcdict/--tgtdict <teacher data-bin>/dict.*.txt.")
            if teacher_dicts:
                self._check_symbols(side, dictionary, name, *teacher_dicts[i])

    def _check_symbols(self, side, dictionary, name, own, own_name):
        if len(own) != len(dictionary):
            raise CheckpointError(
                f"{own_name} has {len(own)} entries, but teacher {self.path!r} has {len(dictionary)} {side} "
                "embeddings: not the dictionary it was trained with. Give the dict.*.txt of the teacher's data-bin.")
        i = first_difference(own.symbols, dictionary.symbols)
        if i is not None:
            raise CheckpointError(
                f"{name} is not the teacher's {side} dictionary {own_name}: entry {i} is {dictionary.symbols[i]!r} "
                f"in the data but {own.symbols[i]!r} for the teacher (the sizes agree, {len(own)} entries, but the "
                "teacher would read the data's tokens as other words). Binarize the data with the teacher's "
                f"dictionary: fairseq-preprocess {PREPROCESS_FLAG[side]} {own_name}.")

    def model(self, task):
        """Built with fairseq's model registry, not `task.build_model`, so a task that wraps the models it
        builds (weight_distillation) does not wrap its teacher."""
        if self._model is None:
            cfg = self.state["cfg"].model
            teacher = models.build_model(cfg, task, from_checkpoint=True)
            teacher.load_state_dict(self.weights, strict=True, model_cfg=cfg)
            teacher.eval()
            teacher.requires_grad_(False)
            self.state["model"] = None  # `weights` now reads the model's own tensors
            logger.info("teacher %s: %d parameters", self.path, sum(p.numel() for p in teacher.parameters()))
            self._model = teacher
        return self._model


def teacher_dictionaries(path, src, tgt):
    """The dictionaries a teacher was trained with, for `check_dictionaries`: [(source dictionary, its
    file), (target ..., ...)] from the teacher's data-bin (dict.SRC.txt, dict.TGT.txt) or from one joined
    dictionary file for both sides."""
    from fairseq.data import Dictionary

    files = [os.path.join(path, f"dict.{lang}.txt") for lang in (src, tgt)] if os.path.isdir(path) else [path, path]
    for f in files:
        if not os.path.isfile(f):
            raise CheckpointError(f"the teacher's dictionary {f} not found: give the teacher's data-bin or its "
                                  "dict.txt (--teacher-dict)")
    return [(Dictionary.load(f), f) for f in files]


def first_difference(a, b):
    """The first index where the symbol lists differ (a length difference counts), else None."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None if len(a) == len(b) else min(len(a), len(b)))


def follow(teacher, student):
    """Moves the teacher to the student's device and float dtype (once; cheap afterwards)."""
    ref = next(student.parameters())
    param = next(teacher.parameters())
    if param.device != ref.device or (ref.is_floating_point() and param.dtype != ref.dtype):
        teacher.to(device=ref.device, dtype=ref.dtype)
    return teacher


@torch.no_grad()
def teacher_forward(teacher, student, net_input, **kwargs):
    return follow(teacher, student)(**net_input, **kwargs)
