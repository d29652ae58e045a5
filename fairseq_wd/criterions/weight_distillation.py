"""`--criterion weight_distillation`: WD phase 1's loss on the generated student.

By default label-smoothed CE only, as the released recipe (on original + teacher-output data).
The word-level KD (`--kd-alpha`) and hidden-state (`--pkd-beta`) terms of `logit_kd` / `pkd` are
available, off by default; turning them on builds the teacher model beside the generator."""
from dataclasses import dataclass, field

from fairseq.criterions import register_criterion

from .pkd import PKDConfig, PKDCriterion


@dataclass
class WeightDistillationCriterionConfig(PKDConfig):
    label_smoothing: float = field(default=0.1, metadata={"help": "epsilon for label smoothing (released recipe: 0.1)"})
    kd_alpha: float = field(default=0.0, metadata={"help": "weight of an optional word-level KD term, in [0, 1]"})
    pkd_beta: float = field(default=0.0, metadata={"help": "weight of an optional Patient-KD hidden-state term"})


@register_criterion("weight_distillation", dataclass=WeightDistillationCriterionConfig)
class WeightDistillationCriterion(PKDCriterion):
    pass
