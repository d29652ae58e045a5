"""Criterions: `logit_kd` (word-level KD), `pkd` (+ Patient-KD), `weight_distillation` (WD phase 1),
`ptp` (Pea-KD's pre-training on teacher predictions)."""
from . import logit_kd, pkd, ptp, weight_distillation  # noqa: F401
