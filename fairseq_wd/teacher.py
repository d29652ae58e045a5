"""Loading a teacher for a task: checked against the data's dictionaries before any training."""
import logging

import torch
from fairseq import models

from .checkpoints import CheckpointError, load_state

logger = logging.getLogger(__name__)


def check_dictionaries(state, src_dict, tgt_dict, path):
    """The teacher's embedding tables must have one row per dictionary entry of the data."""
    weights = state["model"]
    for side, key, dictionary in (
        ("source", "encoder.embed_tokens.weight", src_dict),
        ("target", "decoder.embed_tokens.weight", tgt_dict),
    ):
        if key in weights and weights[key].shape[0] != len(dictionary):
            raise CheckpointError(
                f"teacher {path!r} was trained with a {side} dictionary of {weights[key].shape[0]} "
                f"entries, but this data-bin's {side} dictionary has {len(dictionary)}. Binarize the "
                f"data with the teacher's dictionaries: fairseq-preprocess --srcdict/--tgtdict "
                f"<teacher data-bin>/dict.*.txt."
            )


def load_teacher(path, task):
    """The teacher in eval mode with gradients off, built for `task`'s dictionaries.

    Built with fairseq's model registry directly, not `task.build_model`, so a task that wraps the
    models it builds (weight_distillation) does not wrap its teacher."""
    state = load_state(path, "teacher checkpoint")
    check_dictionaries(state, task.source_dictionary, task.target_dictionary, path)
    teacher = models.build_model(state["cfg"].model, task, from_checkpoint=True)
    teacher.load_state_dict(state["model"], strict=True, model_cfg=state["cfg"].model)
    teacher.eval()
    teacher.requires_grad_(False)
    logger.info("teacher %s: %d parameters", path, sum(p.numel() for p in teacher.parameters()))
    return teacher


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
