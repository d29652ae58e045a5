"""Tasks: `distillation` (translation that knows its teacher)."""
from . import distillation  # noqa: F401
