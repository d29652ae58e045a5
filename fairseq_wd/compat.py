"""Workarounds for fairseq-fixed 0.12.3.1 (and fairseq 0.12.2) under Python 3.11 and torch >= 2.6.

Each fix is applied once, on import of the plugin (`--user-dir fairseq_wd` or `import fairseq_wd`),
names the fairseq version and the symptom, and is a no-op where fairseq already behaves.
"""
import argparse
import atexit
import logging
import threading

import numpy as np
import torch

logger = logging.getLogger(__name__)

def allow_fairseq_checkpoint_globals():
    """fairseq 0.12.x / fairseq-fixed 0.12.3.1 + torch >= 2.6: `fairseq-generate` and resuming fail
    with "Weights only load failed ... Unsupported global: GLOBAL argparse.Namespace", because
    checkpoint_utils calls torch.load without `weights_only` and a checkpoint trained from the
    argparse CLI stores `cfg.model` as a Namespace. We allow-list only the classes fairseq itself
    writes into checkpoints; weights-only loading stays on for everything else."""
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is None:  # torch < 2.4 loads everything anyway
        return
    # The picklers numpy uses for arrays and scalars (their module moved in numpy 2), and the dtype
    # classes: `--eval-bleu` and best-checkpoint tracking store numpy values in extra_state.
    reconstruct_array = np.zeros(1).__reduce__()[0]
    reconstruct_scalar = np.float64(0).__reduce__()[0]
    dtype_classes = {type(np.dtype(code)) for code in np.typecodes["All"]}
    safe = [argparse.Namespace, np.ndarray, np.dtype, reconstruct_array, reconstruct_scalar]
    add_safe_globals(safe + sorted(dtype_classes, key=str))


def keep_last_batch():
    """fairseq-fixed 0.12.3.1 (and fairseq main since d871f616): `data_utils.batch_by_size` drops
    the last batch when its size is not a multiple of --required-batch-size-multiple (default 8),
    so `fairseq-generate` silently skips the longest sentences of a test set (fairseq #5036,
    #5351). The batches cover a prefix of `indices` in order; we append what was cut off."""
    from fairseq.data import data_utils

    original = data_utils.batch_by_size
    if getattr(original, "_fairseq_wd_keeps_last_batch", False):
        return

    def batch_by_size(indices, *args, **kwargs):
        batches = original(indices, *args, **kwargs)
        if kwargs.get("fixed_shapes") is not None or (len(args) > 5 and args[5] is not None):
            return batches
        if not isinstance(indices, np.ndarray):
            indices = np.fromiter(indices, dtype=np.int64, count=-1)
        covered = sum(len(b) for b in batches)
        if covered < len(indices):
            batches = list(batches) + [indices[covered:]]
        return batches

    batch_by_size._fairseq_wd_keeps_last_batch = True
    data_utils.batch_by_size = batch_by_size


def allow_cpu_data_parallel():
    """fairseq-fixed 0.12.3.1, data-parallel training on CPUs (gloo) under
    `torchrun ... fairseq-train --cpu --distributed-world-size N --distributed-backend gloo`:
    1. every rank dies with ZeroDivisionError in `_infer_torch_distributed_launch_init`
       (`rank % torch.cuda.device_count()` with no GPU): on a CPU the device id is irrelevant, use 0;
    2. then DDP refuses `device_ids=[0]` for a CPU module ("device_ids and output_device arguments
       only work with ... GPU modules"): drop them for CPU modules, as torch requires."""
    import os

    from fairseq.distributed import utils as dist_utils
    from fairseq.models import distributed_fairseq_model

    original = dist_utils._infer_torch_distributed_launch_init
    if getattr(original, "_fairseq_wd_cpu_ok", False):
        return

    def infer_launch_init(cfg):
        if torch.cuda.device_count() > 0:
            return original(cfg)
        cfg.distributed_init_method = "env://"
        cfg.distributed_world_size = int(os.environ["WORLD_SIZE"])
        cfg.distributed_rank = int(os.environ["RANK"])
        cfg.device_id = 0
        cfg.distributed_no_spawn = True

    infer_launch_init._fairseq_wd_cpu_ok = True
    dist_utils._infer_torch_distributed_launch_init = infer_launch_init

    ddp = distributed_fairseq_model.DistributedDataParallel

    class CpuFriendlyDDP(ddp):
        def __init__(self, module, device_ids=None, output_device=None, **kwargs):
            if all(p.device.type == "cpu" for p in module.parameters()):
                device_ids = output_device = None
            super().__init__(module, device_ids=device_ids, output_device=output_device, **kwargs)

    distributed_fairseq_model.DistributedDataParallel = CpuFriendlyDDP


def stop_data_threads_at_exit():
    """fairseq 0.12.x: `fairseq-train` can abort after "done training" with "terminate called
    without an active exception" (exit -6, checkpoints already written). The data-prefetch thread
    (`iterators.BackgroundConsumer`, a daemon) is still collating the rest of the epoch when the
    interpreter finalizes; Python then ends it with pthread_exit inside torch's C++ code, which
    std::terminate()s. Seen when --max-update stops mid-epoch, most often with OMP_NUM_THREADS=1.
    At exit we tell those threads to stop before their next batch and wait for them."""
    from fairseq.data import iterators

    consumer = iterators.BackgroundConsumer
    if getattr(consumer, "_fairseq_wd_stoppable", False):
        return
    stopping = threading.Event()

    def until_stopping(source):
        items = iter(source)
        while not stopping.is_set():
            try:
                item = next(items)
            except StopIteration:
                return
            yield item

    original_init = consumer.__init__

    def __init__(self, queue, source, *args, **kwargs):
        original_init(self, queue, until_stopping(source), *args, **kwargs)

    def stop_consumers():
        stopping.set()
        for thread in threading.enumerate():
            if isinstance(thread, consumer):
                for _ in range(200):  # a blocked put() needs room; give up after ~10 s
                    while not thread._queue.empty():
                        thread._queue.get_nowait()
                    thread.join(0.05)
                    if not thread.is_alive():
                        break

    consumer.__init__ = __init__
    consumer._fairseq_wd_stoppable = True
    atexit.register(stop_consumers)


def apply():
    """Idempotent: each patch marks what it wrapped, so a second import of the plugin under
    another path wraps nothing twice."""
    allow_fairseq_checkpoint_globals()
    keep_last_batch()
    allow_cpu_data_parallel()
    stop_data_threads_at_exit()
