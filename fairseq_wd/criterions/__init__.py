"""Criterions: `logit_kd` (word-level KD), `pkd` (+ Patient-KD), `weight_distillation` (WD phase 1)."""
from . import logit_kd, pkd, weight_distillation  # noqa: F401
