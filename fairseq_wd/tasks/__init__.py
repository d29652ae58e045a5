"""Tasks: `distillation` (translation that knows its teacher), `weight_distillation` (WD phase 1)."""
from . import distillation, weight_distillation  # noqa: F401
