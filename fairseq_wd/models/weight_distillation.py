"""WD phase 1: the student's fairseq Transformer, run with weights the generator makes every step.

No Transformer code is copied: training calls fairseq's own model through
`torch.func.functional_call` with the generated tensors, so gradients flow to the generator only
(the student's own parameters are frozen placeholders). Beam search calls the model piecewise, so
before inference `materialize_()` writes the generated weights into the student once, under
no_grad, and fairseq's generator runs unchanged.

Checkpoints hold the generator, the last materialized student and the teacher's fingerprint, never
the teacher's weights; loading a checkpoint made with another teacher is an error.
"""
import logging

import torch
from torch.func import functional_call

from fairseq.models import FairseqEncoderDecoderModel

from ..modules.parameter_generator import ParameterGenerator
from ..modules.weight_plan import build_plan, format_plan

logger = logging.getLogger(__name__)


class TeacherMismatchError(ValueError):
    pass


class WeightDistillationModel(FairseqEncoderDecoderModel):
    def __init__(self, student, teacher_state, share_transforms=True, init="paper"):
        super().__init__(student.encoder, student.decoder)
        object.__setattr__(self, "student", student)  # same encoder/decoder; not registered twice
        self.args = getattr(student, "args", None)
        student.requires_grad_(False)
        shapes = {k: tuple(p.shape) for k, p in student.named_parameters()}
        plan = build_plan(shapes, {k: tuple(v.shape) for k, v in teacher_state.items()})
        logger.info("weight distillation plan:\n%s", format_plan(plan))
        self.generator = ParameterGenerator(plan, teacher_state, share_transforms, init)
        logger.info("generator: %d trainable parameters; student: %d",
                    sum(p.numel() for p in self.generator.parameters()), sum(p.numel() for p in student.parameters()))

    @property
    def plan(self):
        return self.generator.plan

    def forward(self, src_tokens, src_lengths, prev_output_tokens, **kwargs):
        return functional_call(self.student, self.generator(), (src_tokens, src_lengths, prev_output_tokens), kwargs)

    @torch.no_grad()
    def materialize_(self):
        """Writes the generated weights into the student (for beam search and export)."""
        params = dict(self.student.named_parameters())
        for key, value in self.generator().items():
            params[key].copy_(value)
        return self.student

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        key = "generator.teacher_fingerprint"
        if key in state_dict and not torch.equal(state_dict[key].cpu(), self.generator.teacher_fingerprint.cpu()):
            raise TeacherMismatchError(
                "this phase-1 checkpoint was trained with another teacher (fingerprints differ): resume with the "
                "original --teacher-path, or start a new --save-dir for the new teacher"
            )
        return super().load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)
