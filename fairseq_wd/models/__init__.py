"""Architectures (registered for fairseq's `transformer`) and the WD phase-1 model."""
from . import architectures, weight_distillation  # noqa: F401
