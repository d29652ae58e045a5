"""glibc's allocator settings for the pipeline's CPU trainings.

A CPU training step allocates and frees tensors of tens of megabytes (a 4096-token batch's logits over a
4000-word vocabulary: 65 MB, and their gradients). glibc serves a block above its mmap threshold (it
rises to at most 32 MB on its own) with new pages and unmaps it when freed, so every step faults those
pages in and zeroes them again. With freed memory kept for reuse instead (no mmap for large blocks, no
trimming of the heap), the demo's TINY student takes about a quarter fewer CPU seconds, nearly all of
them kernel time, for about a quarter more resident memory (docs/benchmarks.md); its arithmetic, and so
its results, are unchanged.
"""
import os
import sys

KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(2 ** 32), "MALLOC_TRIM_THRESHOLD_": str(2 ** 32)}


def training_environment(environ=os.environ):
    """The variables a CPU training command gets added to its environment: KEEP_FREED_MEMORY on Linux
    (glibc); none elsewhere, nor where `environ` already sets glibc's allocator (a MALLOC_* variable or
    GLIBC_TUNABLES): the user's settings are left as they are."""
    if not sys.platform.startswith("linux"):
        return {}
    if "GLIBC_TUNABLES" in environ or any(k.startswith("MALLOC_") for k in environ):
        return {}
    return dict(KEEP_FREED_MEMORY)
