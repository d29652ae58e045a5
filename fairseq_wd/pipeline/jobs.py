"""Independent steps side by side (`fairseq-wd-pipeline --jobs N`): the students of a run, once the
teacher's output exists, each in a thread of its own that runs its fairseq commands one after the other.
Each command then gets cores / N threads (OMP_NUM_THREADS, unless the user set it) and writes only to its
own log; the pipeline's records come back in the order one job at a time would have written them."""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

_local = threading.local()


def current():
    """The index of the job this thread runs; None outside `run_all`'s parallel jobs."""
    return getattr(_local, "index", None)


def environment(n):
    """The environment of a command run inside one of `n` parallel jobs (None: the pipeline's own)."""
    if current() is None or "OMP_NUM_THREADS" in os.environ:
        return None
    return dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // n)))


def run_all(pipeline, runs, work, n):
    """[work(*run) for run in runs], `n` at a time, in the order of `runs`; a failed job lets the others
    finish, then raises. `pipeline.trainings` and `pipeline.logs` are put in the order of `runs`."""
    if n <= 1 or len(runs) <= 1:
        return [work(*run) for run in runs]

    def one(index, run):
        _local.index = index
        try:
            return work(*run)
        finally:
            _local.index = None

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(one, i, run) for i, run in enumerate(runs)]
        errors = [f.exception() for f in futures]
    def job(folder):  # the index of the job that trained in `folder`; -1 before the jobs
        index = pipeline.job_of.get(folder)
        return -1 if index is None else index

    pipeline.trainings.sort(key=lambda t: job(t[1]))
    pipeline.logs = dict(sorted(pipeline.logs.items(), key=lambda kv: job(os.path.dirname(kv[1][0][0]))))
    failed = next((e for e in errors if e is not None), None)
    if failed is not None:
        raise failed
    return [f.result() for f in futures]
