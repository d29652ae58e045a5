"""fairseq-wd: Weight Distillation and knowledge distillation as a fairseq plugin.

Use with `--user-dir fairseq_wd` (the source folder) or `--user-dir $(fairseq-wd-user-dir)`
(the installed package). Importing applies the compatibility fixes in `compat` and registers
the plugin's architectures, tasks and criterions.
"""
from . import compat

compat.apply()
compat.quiet()

from . import criterions, models, tasks  # noqa: E402,F401  (registration)

__version__ = "0.2.0"
