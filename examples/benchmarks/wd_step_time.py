"""WD phase-1 training-step time relative to training the same student directly, and peak memory,
for base -> TINY and big -> TINY, measured in one run.

Times: one process, the two variants of each pair interleaved for --repeats rounds, median step time.
Peak memory: on a GPU torch's peak allocation per variant; on a CPU the peak resident memory of a
fresh subprocess that builds the variant and runs --steps steps (so variants do not share a peak).
Random weights and tokens: neither time nor memory depends on them.

    python examples/benchmarks/wd_step_time.py [--vocab 8000 --batch 32 --length 30]

Target (issue 4): phase 1 <= 1.5x the student's own step time.
"""
import argparse
import json
import subprocess
import sys

import torch

from common import Task, build, median_step_times, random_batch, train_step
from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion
from fairseq_wd.models.weight_distillation import WeightDistillationModel

PAIRS = {
    "base -> TINY": ("wd_transformer_base", []),
    "big -> TINY": ("wd_transformer_big", ["--encoder-embed-dim", "1024", "--encoder-ffn-embed-dim", "4096",
                                           "--encoder-attention-heads", "16"]),
}


def setup(pair, variant, a, device):
    torch.manual_seed(0)
    task = Task(a.vocab)
    teacher_arch, dims = PAIRS[pair]
    student = build("wd_transformer_tiny", task, *dims)
    if variant == "phase 1":
        model = WeightDistillationModel(student, build(teacher_arch, task).state_dict())
    else:
        model = student
    model = model.to(device).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    sample = random_batch(task, a.batch, a.length)
    if device != "cpu":
        sample = {k: ({kk: vv.to(device) for kk, vv in v.items()} if isinstance(v, dict) else
                      v.to(device) if torch.is_tensor(v) else v) for k, v in sample.items()}
    criterion = LabelSmoothedCrossEntropyCriterion(task, False, 0.1)
    return lambda: train_step(model, criterion, sample, optimizer)


def peak_rss_mb():
    """This process image's peak resident memory. Not ru_maxrss: Linux carries that across fork and
    exec, so a child would report the parent's peak."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))


def peak_memory_subprocess(pair, variant, argv):
    out = subprocess.run([sys.executable, __file__, *argv, "--memory-of", pair, variant],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mb"]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=2, help="steps per timing")
    p.add_argument("--memory-of", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if a.memory_of:
        step = setup(*a.memory_of, a, device)
        for _ in range(a.steps):
            step()
        print(json.dumps({"peak_mb": peak_rss_mb()}))
        return
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; batch {a.batch} x "
          f"{a.length} tokens, vocab {a.vocab}")
    print("| teacher -> student | phase-1 step time vs student alone | peak memory, student alone | peak memory, phase 1 |")
    print("|---|---|---|---|")
    for pair in PAIRS:
        times = median_step_times({v: setup(pair, v, a, device) for v in ("student", "phase 1")}, a.repeats, a.steps)
        if device == "cpu":
            mem = {v: peak_memory_subprocess(pair, v, argv) for v in ("student", "phase 1")}
        else:
            mem = {}
            for v in ("student", "phase 1"):
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                step = setup(pair, v, a, device)
                step()
                mem[v] = torch.cuda.max_memory_allocated() / 2**20
        print(f"| {pair} | {times['phase 1'] / times['student']:.2f}x | {mem['student']:.0f} MB | {mem['phase 1']:.0f} MB |")


if __name__ == "__main__":
    main()
