"""Architectures and the WD phase-1 model, registered with fairseq's model registry."""
from . import architectures  # noqa: F401
