"""Workarounds for fairseq-fixed 0.12.3.1 (and fairseq 0.12.2) under Python 3.11 and torch >= 2.6.

Each patch names the fairseq version and the symptom, first checks that the installed fairseq or
torch has the bug (and does nothing where it behaves), and is applied once, on import of the plugin
(`--user-dir fairseq_wd` or `import fairseq_wd`). What was patched is logged once. Set
FAIRSEQ_WD_NO_PATCH to a comma-separated list of patch names (or `all`) to leave fairseq as it is.
tests/test_compat.py shows each bug with its patch turned off.
"""
import argparse
import atexit
import inspect
import io
import logging
import math
import os
import pickle
import sys
import threading

import numpy as np
import torch

logger = logging.getLogger(__name__)
OPT_OUT = "FAIRSEQ_WD_NO_PATCH"
PATCHES = []  # in the order they are applied


def patch(fix):
    """Registers `fix`: it returns True when it patched something, False when fairseq needs no fix."""
    PATCHES.append(fix)
    return fix


@patch
def allow_fairseq_checkpoint_globals():
    """fairseq 0.12.x / fairseq-fixed 0.12.3.1 + torch >= 2.6: `fairseq-generate` and resuming fail
    with "Weights only load failed ... Unsupported global: GLOBAL argparse.Namespace", because
    checkpoint_utils calls torch.load without `weights_only` and a checkpoint trained from the
    argparse CLI stores `cfg.model` as a Namespace. We allow-list only the classes fairseq itself
    writes into checkpoints; weights-only loading stays on for everything else."""
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    buffer = io.BytesIO()
    torch.save(argparse.Namespace(), buffer)
    try:
        torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
        return False  # torch < 2.6 (or already allowed): a Namespace loads
    except pickle.UnpicklingError:
        if add_safe_globals is None:
            return False
    # The picklers numpy uses for arrays and scalars (their module moved in numpy 2), and the dtype
    # classes: `--eval-bleu` and best-checkpoint tracking store numpy values in extra_state.
    reconstruct_array = np.zeros(1).__reduce__()[0]
    reconstruct_scalar = np.float64(0).__reduce__()[0]
    dtype_classes = {type(np.dtype(code)) for code in np.typecodes["All"]}
    safe = [argparse.Namespace, np.ndarray, np.dtype, reconstruct_array, reconstruct_scalar]
    add_safe_globals(safe + sorted(dtype_classes, key=str))
    return True


@patch
def load_broadcast_checkpoints():
    """fairseq 0.12.x / fairseq-fixed 0.12.3.1 + torch >= 2.6: resuming a data-parallel training fails on
    every rank but the first with "Weights only load failed ... Unsupported global: GLOBAL
    omegaconf.dictconfig.DictConfig": trainer.load_checkpoint reads checkpoint_last.pt on rank 0 and sends
    the state to the others through distributed.utils._broadcast_object_slow, whose torch.load takes the
    weights-only default, and the state's cfg is a DictConfig. The receiving ranks now load it weights-only
    with omegaconf's config classes allowed, for that load only."""
    from fairseq.distributed import utils as dist_utils
    from packaging.version import Version

    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is None or Version(torch.__version__.split("+")[0]) < Version("2.6"):
        return False  # before 2.6 torch.load's default unpickles anything, a DictConfig too
    import typing
    from collections import defaultdict

    import omegaconf
    from omegaconf import base, nodes

    # the state's config classes, and the placeholders broadcast_object leaves where it sent tensors apart
    config_classes = [omegaconf.DictConfig, omegaconf.ListConfig, base.ContainerMetadata, base.Metadata,
                      nodes.AnyNode, nodes.StringNode, nodes.IntegerNode, nodes.FloatNode, nodes.BooleanNode,
                      nodes.EnumNode, typing.Any, defaultdict, dict, list, int, float, bool, str,
                      dist_utils._TensorPlaceholder]
    original = dist_utils._broadcast_object_slow

    def broadcast_object_slow(obj, src_rank, group, dist_device):
        if dist_utils.get_rank(group) == src_rank:
            return original(obj, src_rank, group, dist_device)
        length = torch.LongTensor([0]).to(dist_device)
        dist_utils.broadcast(length, src=src_rank, group=group)
        received = torch.ByteTensor(int(length.item())).to(dist_device)
        dist_utils.broadcast(received, src=src_rank, group=group)
        with safe_globals(config_classes):
            return torch.load(io.BytesIO(received.cpu().numpy()), map_location="cpu", weights_only=True)

    dist_utils._broadcast_object_slow = broadcast_object_slow
    return True


@patch
def keep_last_batch():
    """fairseq-fixed 0.12.3.1 (and fairseq main since d871f616): `data_utils.batch_by_size` drops
    the last batch when its size is not a multiple of --required-batch-size-multiple (default 8),
    so `fairseq-generate` silently skips the longest sentences of a test set (fairseq #5036,
    #5351). The batches cover a prefix of `indices` in order; we append what was cut off. Training
    batches then include that last batch too, as in fairseq 0.12.2."""
    from fairseq.data import data_utils

    original = data_utils.batch_by_size
    probe = original(np.arange(9), lambda i: 1, max_sentences=8, required_batch_size_multiple=8)
    if sum(len(b) for b in probe) == 9:
        return False

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

    data_utils.batch_by_size = batch_by_size
    return True


@patch
def allow_cpu_data_parallel():
    """fairseq-fixed 0.12.3.1, data-parallel training on CPUs (gloo) under
    `torchrun ... fairseq-train --cpu --distributed-world-size N --distributed-backend gloo`:
    1. every rank dies with ZeroDivisionError in `_infer_torch_distributed_launch_init`
       (`rank % torch.cuda.device_count()` with no GPU): on a CPU the device id is irrelevant, use 0;
    2. then DDP refuses `device_ids=[0]` for a CPU module ("device_ids and output_device arguments
       only work with ... GPU modules"): drop them for CPU modules, as torch requires."""
    from fairseq.distributed import utils as dist_utils
    from fairseq.models import distributed_fairseq_model

    original = dist_utils._infer_torch_distributed_launch_init
    if "% torch.cuda.device_count()" not in inspect.getsource(original):
        return False

    def infer_launch_init(cfg):
        if torch.cuda.device_count() > 0:
            return original(cfg)
        cfg.distributed_init_method = "env://"
        cfg.distributed_world_size = int(os.environ["WORLD_SIZE"])
        cfg.distributed_rank = int(os.environ["RANK"])
        cfg.device_id = 0
        cfg.distributed_no_spawn = True

    dist_utils._infer_torch_distributed_launch_init = infer_launch_init

    ddp = distributed_fairseq_model.DistributedDataParallel

    class CpuFriendlyDDP(ddp):
        def __init__(self, module, device_ids=None, output_device=None, **kwargs):
            if all(p.device.type == "cpu" for p in module.parameters()):
                device_ids = output_device = None
            super().__init__(module, device_ids=device_ids, output_device=output_device, **kwargs)

    distributed_fairseq_model.DistributedDataParallel = CpuFriendlyDDP
    return True


@patch
def stop_data_threads_at_exit():
    """fairseq 0.12.x: `fairseq-train` can abort after "done training" with "terminate called
    without an active exception" (exit -6, checkpoints already written). The data-prefetch thread
    (`iterators.BackgroundConsumer`, a daemon) is still collating the rest of the epoch when the
    interpreter finalizes; Python then ends it with pthread_exit inside torch's C++ code, which
    std::terminate()s. Seen when --max-update stops mid-epoch, most often with OMP_NUM_THREADS=1.
    At exit we tell those threads to stop before their next batch and wait for them."""
    from fairseq.data import iterators

    consumer = iterators.BackgroundConsumer
    if getattr(consumer, "_fairseq_wd_stoppable", False) or any(name in vars(consumer) for name in ("stop", "close")):
        return False  # patched already, or a fairseq that can stop it
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
    return True


@patch
def atomic_checkpoint_copies():
    """fairseq 0.12.x `save_checkpoint` writes the first checkpoint atomically (to .tmp, then renamed) but
    copies it to the others (checkpoint_last.pt, checkpoint_best.pt) in place: a run killed during that
    copy, or a disk that fills, leaves a truncated checkpoint_last.pt and the rerun cannot resume. We copy
    to .tmp and rename, so checkpoint_last.pt is the old one or the new one, never half of one."""
    from fairseq import checkpoint_utils

    if (getattr(checkpoint_utils.PathManager, "_fairseq_wd_atomic_copies", False)
            or "PathManager.copy(" not in inspect.getsource(checkpoint_utils.save_checkpoint)):
        return False
    checkpoint_utils.PathManager = AtomicCopies(checkpoint_utils.PathManager)
    return True


class AtomicCopies:
    """fairseq's PathManager whose copy() goes through a temporary file and a rename."""
    _fairseq_wd_atomic_copies = True

    def __init__(self, path_manager):
        self.path_manager = path_manager

    def __getattr__(self, name):
        return getattr(self.path_manager, name)

    def copy(self, src_path, dst_path, overwrite=False, **kwargs):
        if not self.path_manager.supports_rename(dst_path):
            return self.path_manager.copy(src_path, dst_path, overwrite=overwrite, **kwargs)
        tmp = dst_path + ".tmp"
        copied = False
        try:
            copied = self.path_manager.copy(src_path, tmp, overwrite=True, **kwargs)
        finally:
            if not copied and self.path_manager.exists(tmp):
                self.path_manager.rm(tmp)
        if copied:
            self.path_manager.rename(tmp, dst_path)
        return copied


def _train_module():
    """fairseq_cli.train where fairseq-train, fairseq-hydra-train or `python -m fairseq_cli.train` runs."""
    train_module = sys.modules.get("fairseq_cli.train")
    main = sys.modules.get("__main__")
    if train_module is None and getattr(getattr(main, "__spec__", None), "name", None) == "fairseq_cli.train":
        train_module = main
    return train_module


@patch
def stop_at_max_update():
    """fairseq 0.12.x `fairseq-train` resumed from a checkpoint_last.pt that has reached --max-update
    trains one more update (it checks the limit only after a step) and saves it: rerunning a finished
    training, or a pipeline killed between fairseq-train's last save and its own completion mark,
    changes the model. We stop before the first step when the limit is reached."""
    train_module = _train_module()
    if train_module is None or getattr(train_module.train, "_fairseq_wd_stops", False):
        return False
    original = train_module.train

    def train(cfg, trainer, task, epoch_itr):
        if trainer.get_num_updates() >= (cfg.optimization.max_update or math.inf):
            logger.info("checkpoint at --max-update %d already: nothing to train", cfg.optimization.max_update)
            return [None], True
        if getattr(trainer, "_fairseq_wd_patience_spent", False):  # set by resume_patience
            logger.info("checkpoint stopped early already (--patience %d): nothing to train", cfg.checkpoint.patience)
            return [None], True
        return original(cfg, trainer, task, epoch_itr)

    train._fairseq_wd_stops = True
    train_module.train = train
    return True


@patch
def resume_with_the_same_batches():
    """fairseq-fixed 0.12.3.1 makes a training run's batches once, when its epoch iterator is first built,
    and orders the sentences within a length with `numpy_seed(seed + epoch)`. An uninterrupted run builds it
    at epoch 1 and reuses it; a run resumed from an epoch's checkpoint builds it at that epoch, so it trains
    on differently composed batches from there on (a killed run does not continue as it would have). We
    build the batches as at epoch 1 wherever fairseq reuses them across epochs. Not covered:
    --update-ordered-indices-seed, where fairseq passes an epoch-dependent seed itself."""
    from fairseq.tasks.fairseq_task import FairseqTask

    original = FairseqTask.get_batch_iterator
    if getattr(original, "_fairseq_wd_epoch1", False) or "numpy_seed(seed + epoch)" not in inspect.getsource(original):
        return False

    def get_batch_iterator(self, dataset, *args, epoch=1, **kwargs):
        rebuilt = (kwargs.get("disable_iterator_cache") or kwargs.get("update_epoch_batch_itr")
                   or getattr(self.cfg, "rebuild_batches", False) or not self.can_reuse_epoch_itr(dataset))
        if epoch <= 1 or rebuilt or dataset in self.dataset_to_epoch_iter:  # the last: reused as it is
            return original(self, dataset, *args, epoch=epoch, **kwargs)
        iterator = original(self, dataset, *args, epoch=1, **kwargs)
        iterator.epoch = epoch  # as if created at `epoch`: the batches are those of epoch 1, shuffled for `epoch`
        return iterator

    get_batch_iterator._fairseq_wd_epoch1 = True
    FairseqTask.get_batch_iterator = get_batch_iterator
    return True


@patch
def resume_patience():
    """fairseq 0.12.x counts --patience (validations without a better valid metric) in attributes of
    fairseq_cli.train.should_stop_early that no checkpoint holds: a training killed and resumed starts
    counting again, so it trains longer than the same training uninterrupted (and one rerun after it
    stopped early trains on). We save the count with each checkpoint (extra_state) and restore it when a
    training resumes from its own checkpoint_last.pt (not when --finetune-from-model starts a new one);
    one whose count had run out does not train again."""
    from fairseq import checkpoint_utils
    from fairseq.trainer import Trainer

    train_module = _train_module()
    if (train_module is None or getattr(Trainer.save_checkpoint, "_fairseq_wd_patience", False)
            or "should_stop_early" in inspect.getsource(checkpoint_utils)):
        return False
    stop, original_save, original_load = train_module.should_stop_early, Trainer.save_checkpoint, checkpoint_utils.load_checkpoint

    def save_checkpoint(self, filename, extra_state):
        if hasattr(stop, "best"):
            extra_state = {**extra_state, "fairseq_wd_patience": {"best": stop.best, "num_runs": stop.num_runs}}
        return original_save(self, filename, extra_state)

    def load_checkpoint(cfg, trainer, **kwargs):
        extra_state, epoch_itr = original_load(cfg, trainer, **kwargs)
        saved = (extra_state or {}).get("fairseq_wd_patience")
        resumed = os.path.exists(os.path.join(cfg.save_dir, cfg.restore_file)) or not cfg.finetune_from_model
        if saved and resumed and not (cfg.reset_meters or cfg.reset_dataloader):
            stop.best, stop.num_runs = saved["best"], saved["num_runs"]
            # a training that had stopped early stays stopped (stop_at_max_update's check before a step)
            trainer._fairseq_wd_patience_spent = 0 < cfg.patience <= stop.num_runs
        return extra_state, epoch_itr

    save_checkpoint._fairseq_wd_patience = True
    Trainer.save_checkpoint = save_checkpoint
    checkpoint_utils.load_checkpoint = load_checkpoint
    return True


# What fairseq 0.12 under hydra 1.3 and torch 2.x prints at every command, none of it for a user to act
# on: (category, the start of its message). FAIRSEQ_WD_VERBOSE=1 keeps them.
NOISE = ((UserWarning, r"\s*(The version_base parameter is not specified|'config' is validated against ConfigStore"
                       r"|The strict flag in the compose API is deprecated|hydra\.experimental\.\w+\(\) is no longer "
                       r"experimental|In '[^']*': Usage of deprecated keyword in package header)"),
         (UserWarning, r"'pin_memory' argument is set as true but no accelerator is found"),
         (UserWarning, r"Support for mismatched key_padding_mask and attn_mask is deprecated"),
         (FutureWarning, r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated"),
         (DeprecationWarning, r"`torch\.jit\.script` is deprecated"))
QUIET_LOGGERS = ("hydra", "matplotlib")  # DEBUG lines under the root logger fairseq's import leaves at DEBUG


def quiet():
    """Keeps the known noise above (and hydra's and matplotlib's DEBUG logs) off the terminal, so that a
    command shows fairseq's progress and the plugin's messages; every other warning still shows."""
    if os.environ.get("FAIRSEQ_WD_VERBOSE"):
        return
    import warnings

    for category, message in NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if name == "hydra" else logging.WARNING)


def apply():
    """Once per process: a second import of the plugin under another module path finds fairseq
    already patched (the probes see the bugs gone) and patches nothing twice."""
    off = {name.strip() for name in os.environ.get(OPT_OUT, "").split(",") if name.strip()}
    unknown = off - {fix.__name__ for fix in PATCHES} - {"all"}
    if unknown:
        raise ValueError(f"{OPT_OUT}={os.environ[OPT_OUT]}: unknown patches {sorted(unknown)}; "
                         f"known: {', '.join(fix.__name__ for fix in PATCHES)}, all")
    applied = [fix.__name__ for fix in PATCHES if not ({"all", fix.__name__} & off) and fix()]
    if applied:
        logger.info("fairseq-wd patched fairseq: %s (%s=NAME,... turns a patch off)", ", ".join(applied), OPT_OUT)
