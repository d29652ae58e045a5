"""`fairseq-wd-merge`: separate runs' bench outputs (each a `fairseq-wd-bench --output-dir`, typically one
seed, maybe from another machine) merged into one table, from their hypotheses and stored references alone.

    fairseq-wd-merge seed1/bench seed2/bench seed3/bench --output merged/
    fairseq-wd-merge runs/*/bench --output docs/results/demo --keep   # kept: merged again from OUTPUT/runs alone

Writes merged.md and merged.json: per model BLEU and chrF mean +- sd over its seeds (its distinct
checkpoints over the runs), speed from the first run given, and each pair the benches tested (every row
against the first, the --compare pairs) seed pair by seed pair: the differences' mean +- sd and each pair's
paired bootstrap p. Runs that do not share the test set, references, teacher checkpoint or bench settings
are refused, the message naming which runs differ and in what.
"""
import argparse
import os
import sys

from ..bench import results
from ..bench.merge import MergeError, labels, merge, write
from ..bench.scoring import BOOTSTRAP_SAMPLES


def get_parser():
    p = argparse.ArgumentParser(prog="fairseq-wd-merge", description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_BENCH_DIR",
                   help="a run's fairseq-wd-bench output folder (bench.json, NAME.hyp, references.txt); repeat")
    p.add_argument("--output", required=True, metavar="DIR", help="where merged.md and merged.json go")
    p.add_argument("--keep", action="store_true",
                   help="first copy each run (bench.json, bench.md, run.json, references, hypotheses, curves.json; "
                        "machine paths cut) to OUTPUT/runs/RUN, and merge those copies: results to keep in a "
                        "repository")
    p.add_argument("--teacher", metavar="NAME",
                   help="the row every run must share the checkpoint of (default: the first run's first row)")
    p.add_argument("--bootstrap-samples", type=int, default=BOOTSTRAP_SAMPLES,
                   help=f"paired bootstrap resamples per seed pair (default {BOOTSTRAP_SAMPLES}, as sacrebleu)")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.bootstrap_samples < 40:
        sys.exit("fairseq-wd-merge: error: --bootstrap-samples must be at least 40 (a 95% interval needs them)")
    try:
        runs = args.runs
        if args.keep:
            runs = [results.keep(run, os.path.join(args.output, "runs", label))
                    for run, label in zip(runs, labels(runs))]
        table = write(merge(runs, args.teacher, args.bootstrap_samples), args.output)
    except (MergeError, FileExistsError) as e:
        sys.exit(f"fairseq-wd-merge: error: {e}")
    print(table)


if __name__ == "__main__":
    main()
