"""Tasks: `distillation` (translation that knows its teacher)."""
