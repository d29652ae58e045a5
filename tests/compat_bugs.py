"""Shows, for each patch of fairseq_wd.compat, whether the fairseq bug it fixes shows in this process:
prints `NAME: bug` or `NAME: fixed`. Run with FAIRSEQ_WD_NO_PATCH to see the bugs. Argument: a
checkpoint written by fairseq-train."""
import atexit
import logging
import os
import resource
import signal
import sys
import tempfile

logging.basicConfig(level=logging.INFO)  # the plugin logs what it patched
results = {}


def report():
    for name, bug in results.items():
        print(f"{name}: {'bug' if bug else 'fixed'}", flush=True)


def prefetch_thread_alive():
    import threading

    from fairseq.data import iterators

    results["stop_data_threads_at_exit"] = any(isinstance(t, iterators.BackgroundConsumer) and t.is_alive()
                                               for t in threading.enumerate())


# exit handlers run last-registered first: the plugin's (registered on import), then these two
atexit.register(report)
atexit.register(prefetch_thread_alive)

import fairseq_cli.train  # noqa: E402,F401  (as in fairseq-train: every patch applies)
import fairseq_wd  # noqa: E402,F401  (the patches)
import numpy as np  # noqa: E402
from fairseq import checkpoint_utils  # noqa: E402
from fairseq.data import data_utils, iterators  # noqa: E402
from fairseq.dataclass.configs import DistributedTrainingConfig  # noqa: E402
from fairseq.distributed import utils as dist_utils  # noqa: E402

try:
    checkpoint_utils.load_checkpoint_to_cpu(sys.argv[1])
    results["allow_fairseq_checkpoint_globals"] = False
except Exception as e:
    results["allow_fairseq_checkpoint_globals"] = "Weights only load failed" in str(e)

# A rank > 0 receiving rank 0's checkpoint state (its cfg a DictConfig) when data-parallel training resumes.
import io  # noqa: E402

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

sent = io.BytesIO()
torch.save({"cfg": OmegaConf.create({"task": {"data": "x"}})}, sent)
sent = sent.getvalue()


def broadcast(tensor, src, group):  # what torch.distributed gives a receiving rank
    tensor.copy_(torch.tensor([len(sent)]) if tensor.dtype == torch.long else torch.frombuffer(bytearray(sent),
                                                                                              dtype=torch.uint8))


broadcast_of, rank_of = dist_utils.broadcast, dist_utils.get_rank
dist_utils.broadcast, dist_utils.get_rank = broadcast, lambda group: 1
try:
    received = dist_utils._broadcast_object_slow(None, 0, None, torch.device("cpu"))
    results["load_broadcast_checkpoints"] = received["cfg"].task.data != "x"
except Exception as e:
    results["load_broadcast_checkpoints"] = "Weights only load failed" in str(e)
dist_utils.broadcast, dist_utils.get_rank = broadcast_of, rank_of

batches = data_utils.batch_by_size(np.arange(20), lambda i: 1, max_sentences=8, required_batch_size_multiple=8)
results["keep_last_batch"] = sum(len(b) for b in batches) < 20  # fairseq-generate would skip 4 sentences

os.environ.update(WORLD_SIZE="2", RANK="1", LOCAL_RANK="1")  # as torchrun sets them, on a CPU-only machine
try:
    dist_utils._infer_torch_distributed_launch_init(DistributedTrainingConfig())
    results["allow_cpu_data_parallel"] = False
except ZeroDivisionError:
    results["allow_cpu_data_parallel"] = True

folder = tempfile.mkdtemp()
src, dst = os.path.join(folder, "checkpoint_best.pt"), os.path.join(folder, "checkpoint_last.pt")
with open(src, "wb") as f:
    f.write(b"n" * 200_000)
with open(dst, "wb") as f:
    f.write(b"o" * 1000)  # the previous checkpoint_last.pt
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))  # the disk fills mid-copy
try:
    checkpoint_utils.PathManager.copy(src, dst, overwrite=True)
except OSError:
    pass  # fairseq-train stops here with this error; what matters is what the rerun finds
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
with open(dst, "rb") as f:
    results["atomic_checkpoint_copies"] = f.read() != b"o" * 1000  # neither old nor new: half a checkpoint

# A prefetch thread still collating at exit (fairseq-train stopped mid-epoch by --max-update).
class Batches:
    def __len__(self):
        return 10**9

    def __iter__(self):
        while True:
            yield np.zeros(1000)


next(iterators.BufferedIterator(2, Batches()))
