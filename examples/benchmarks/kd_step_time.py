"""Training-step time of `logit_kd` relative to plain `label_smoothed_cross_entropy`, same student.

One process and batch shape; the variants are interleaved for --repeats rounds (machine drift hits
all alike) and the median step time of each is compared. Base-shaped teacher (6-6, 512/2048), TINY
student (6-1, decoder 256/1024), random weights and tokens: step time does not depend on them.

    python examples/benchmarks/kd_step_time.py [--vocab 8000 --batch 32 --length 30 --topk 8]

Targets (issue 3): online teacher <= 1.35x, offline top-K <= 1.05x.
"""
import argparse

import torch

from common import Task, build, median_step_times, random_batch, train_step
from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion
from fairseq_wd.criterions.logit_kd import LogitKDCriterion


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=30)
    p.add_argument("--topk", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="steps per timing")
    a = p.parse_args(argv)
    torch.manual_seed(0)
    task = Task(a.vocab)
    task.teacher = build("wd_transformer_base", task).eval()
    student = build("wd_transformer_tiny", task).train()
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-4)
    sample = random_batch(task, a.batch, a.length)
    offline = dict(sample, teacher_topk_idx=torch.randint(4, a.vocab, (a.batch, a.length, a.topk)),
                   teacher_topk_lprob=torch.log_softmax(torch.randn(a.batch, a.length, a.topk), -1))
    criteria = {
        "label_smoothed_cross_entropy": (LabelSmoothedCrossEntropyCriterion(task, False, 0.1), sample),
        "logit_kd, online teacher (full vocabulary)": (LogitKDCriterion(task, False, 0.1, 0.5, 1.0, 0), sample),
        f"logit_kd, offline top-{a.topk}": (LogitKDCriterion(task, False, 0.1, 0.5, 1.0, 0), offline),
    }
    times = median_step_times({n: (lambda c=c, s=s: train_step(student, c, s, optimizer))
                               for n, (c, s) in criteria.items()}, a.repeats, a.steps)
    base = times["label_smoothed_cross_entropy"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {a.batch} x {a.length} tokens, "
          f"vocab {a.vocab}; teacher base 6-6 512, student TINY 6-1 (decoder 256)")
    print("| criterion | step time vs plain CE |\n|---|---|")
    for name, t in times.items():
        print(f"| {name} | {t / base:.2f}x |")


if __name__ == "__main__":
    main()
