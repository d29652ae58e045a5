"""Criterions: `logit_kd` (word-level KD), `pkd` (logit KD + Patient-KD hidden states)."""
from . import logit_kd, pkd  # noqa: F401
