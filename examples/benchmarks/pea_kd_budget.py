"""Pea-KD against plain `logit_kd` on the shipped corpus, at a longer budget than `make demo`'s.

`make demo`'s 240 updates leave every student trained from a random start near zero BLEU, too early
to compare methods. This trains only the four students of that comparison, TINY + logit_kd and the
three of `fairseq-wd-pipeline --pea-kd`, with `--update-scale` times the demo's updates, through the
pipeline's own steps (shipped teacher and corpus, demo settings, skip-when-done, resumable), then
benchmarks them with the teacher:

    python examples/benchmarks/pea_kd_budget.py --update-scale 2.5 --work-dir runs/pea_kd_x2.5
"""
import argparse

from fairseq_wd.cli.pipeline import Pipeline, get_parser


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--update-scale", type=float, default=2.5, help="times the demo's 240 updates per student")
    p.add_argument("--work-dir", default="runs/pea_kd_budget")
    a = p.parse_args()
    pipe = Pipeline(get_parser().parse_args(["--work-dir", a.work_dir, "--update-scale", str(a.update_scale)]))
    bundle = pipe.teacher_bundle()
    pipe.prepare(bundle)
    teacher = pipe.teacher(bundle)
    models = {"teacher": teacher, **pipe.kd_student(teacher), **pipe.pea_kd(teacher)}
    print(open(pipe.bench(models)).read())


if __name__ == "__main__":
    main()
