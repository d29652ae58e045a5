"""CPU cost of a TINY student's fairseq-train with glibc's default allocator and with the settings that
fairseq-wd-pipeline gives its CPU trainings (fairseq_wd/pipeline/allocator.py: freed memory kept for
reuse), run after one another --repeats times on one thread. Per run: user and kernel CPU seconds (the
process start included), peak resident size and minor page faults, from the kernel's accounting.

    python examples/benchmarks/cpu_allocator.py demo [--updates 80 --repeats 2]

WORK (here `demo`) is a finished `make demo` run: its data-bin and teacher output (kd-bin) are trained
on as the demo's KD baseline is (the demo recipe's flags).
"""
import argparse
import os
import subprocess
import sys
import tempfile

from fairseq_wd.pipeline.allocator import KEEP_FREED_MEMORY
from fairseq_wd.pipeline.inputs import PACKAGE
from fairseq_wd.recipes import RECIPES


def train(work, updates, env):
    """One fairseq-train under `env`: (user s, kernel s, peak resident MB, minor faults) of its process."""
    recipe = RECIPES["demo"]
    with tempfile.TemporaryDirectory() as save:
        cmd = [os.path.join(os.path.dirname(sys.executable), "fairseq-train"), os.path.join(work, "data-bin"),
               "--user-dir", PACKAGE, "--save-dir", save, "--task", "distillation", "--extra-train-data",
               os.path.join(work, "kd-bin"), "--arch", "wd_transformer_tiny", *recipe.student_encoder,
               "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1", *recipe.train,
               "--max-update", str(updates), "--cpu", "--no-save", "--disable-validation"]
        with open(os.path.join(save, "train.log"), "w+") as log:
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(proc.pid, 0)  # reaped here, for its rusage alone
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode:
                log.seek(0)
                sys.exit(f"fairseq-train failed:\n{log.read()[-2000:]}")
    return usage.ru_utime, usage.ru_stime, usage.ru_maxrss / 1024, usage.ru_minflt


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("work", help="a finished `make demo` work dir (data-bin, kd-bin)")
    p.add_argument("--updates", type=int, default=80)
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args(argv)
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    settings = {"glibc's defaults": {}, "freed memory kept": KEEP_FREED_MEMORY}
    print("| allocator | run | user s | kernel s | CPU s | peak resident MB | minor faults |\n|---|---|---|---|---|---|---|")
    for run in range(1, a.repeats + 1):
        for name, extra in settings.items():
            user, kernel, rss, faults = train(a.work, a.updates, dict(base, OMP_NUM_THREADS="1", **extra))
            print(f"| {name} | {run} | {user:.1f} | {kernel:.1f} | {user + kernel:.1f} | {rss:.0f} | {faults} |", flush=True)


if __name__ == "__main__":
    main()
