"""Architectures (registered for fairseq's `transformer`), the SPS Transformer and the WD phase-1 model."""
from . import architectures, sps_transformer, weight_distillation  # noqa: F401
