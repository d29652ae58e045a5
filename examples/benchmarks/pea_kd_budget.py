"""Pea-KD against plain `logit_kd` on the shipped corpus, at a chosen budget.

At 240 updates every student trained from a random start is near zero BLEU, too early to compare
methods. This trains only the four students of that comparison, TINY + logit_kd and the
three of `fairseq-wd-pipeline --methods pea-kd`, with `--update-scale` times the demo's updates, through the
pipeline's own steps (shipped teacher and corpus, demo settings, skip-when-done, resumable), then
benchmarks them with the teacher:

    python examples/benchmarks/pea_kd_budget.py --update-scale 0.6 --work-dir runs/pea_kd_600
"""
import argparse

from fairseq_wd.cli.pipeline import get_parser
from fairseq_wd.pipeline.experiment import Pipeline


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--update-scale", type=float, default=0.6, help="times the demo's 1000 updates per student")
    p.add_argument("--work-dir", default="runs/pea_kd_budget")
    a = p.parse_args()
    pipe = Pipeline(get_parser().parse_args(["--work-dir", a.work_dir, "--update-scale", str(a.update_scale),
                                             "--methods", "logit_kd,pea-kd"]))
    teacher = pipe.data_and_teacher()
    models = {"teacher": teacher, **pipe.students(teacher, kd_bin=None)}
    print(pipe.bench(models))


if __name__ == "__main__":
    main()
