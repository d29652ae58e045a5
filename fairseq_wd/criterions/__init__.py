"""Criterions: `logit_kd`, `pkd`."""
