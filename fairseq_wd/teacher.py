"""The teacher: one object per process that reads its checkpoint once and serves every part that needs
it (the dictionary check, WD's generator, the KD criterions' model, the pipeline's checks)."""
import logging

import torch
from fairseq import models

from .checkpoints import CheckpointError, load_state, model_args

logger = logging.getLogger(__name__)


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

    def check_dictionaries(self, src_dict, tgt_dict, names=None):
        """The teacher's embedding tables must have one row per dictionary entry of the data."""
        sides = ("source", "target")
        names = names or [f"this data-bin's {side} dictionary" for side in sides]
        for side, stack, dictionary, name in zip(sides, ("encoder", "decoder"), (src_dict, tgt_dict), names):
            key = f"{stack}.embed_tokens.weight"
            rows = self.weights[key].shape[0] if key in self.weights else len(dictionary)
            if rows != len(dictionary):
                raise CheckpointError(
                    f"teacher {self.path!r} was trained with a {side} dictionary of {rows} entries, but {name} has "
                    f"{len(dictionary)}: not the teacher's dictionary. Binarize the data with the teacher's "
                    "dictionaries: fairseq-preprocess --srcdict/--tgtdict <teacher data-bin>/dict.*.txt.")

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
