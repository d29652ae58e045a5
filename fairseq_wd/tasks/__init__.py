"""Tasks: `distillation` (translation that knows its teacher), `weight_distillation` (WD phase 1), and
the same over fairseq's multilingual task: `distillation_multi_simple_epoch`,
`weight_distillation_multi_simple_epoch`."""
from . import distillation, multi_simple_epoch, weight_distillation  # noqa: F401
