"""Where a student loses BLEU against its baseline: the test sentences split by reference length into
--buckets groups of equal size, and per kept run (seed) the row's corpus BLEU minus the baseline's within
each group (sacrebleu, the tokenizer and case the runs were scored with). Reads bench outputs only.

    python examples/benchmarks/bleu_by_length.py docs/results/cpu-en-ro/runs/* \\
        --model "TINY WD (orig+teacher-out, generator then CE)" --baseline teacher
"""
import argparse

from fairseq_wd.bench import merge


def bucket_table(runs, model, baseline, n_buckets):
    """Markdown: a row per run, a column per reference-length group (its word range), BLEU differences."""
    scorer = merge.scorer_for(runs)
    references = runs[0].references[0]
    order = sorted(range(len(references)), key=lambda i: len(references[i].split()))
    groups = [order[k * len(order) // n_buckets:(k + 1) * len(order) // n_buckets] for k in range(n_buckets)]
    words = [[len(references[i].split()) for i in g] for g in groups]
    header = [f"{min(w)}-{max(w)} words" for w in words]
    lines = [f"{model} minus {baseline}, test BLEU by reference length ({len(references)} sentences, "
             f"{n_buckets} groups of equal size):", "",
             "| run | " + " | ".join(header) + " | all |", "|---" * (len(header) + 2) + "|"]
    for run in runs:
        for name in (model, baseline):
            if name not in run.hypotheses:
                raise SystemExit(f"run {run.label} has no row {name!r}")
        system, base = run.hypotheses[model][0], run.hypotheses[baseline][0]
        cells = []
        for g in [*groups, order]:
            refs = [[reference[i] for i in g] for reference in runs[0].references]
            score = [scorer.metrics()["bleu"].corpus_score([h[i] for i in g], refs).score for h in (system, base)]
            cells.append(f"{score[0] - score[1]:+.2f}")
        lines.append(f"| {run.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_BENCH_DIR", help="kept bench outputs sharing a test set")
    parser.add_argument("--model", required=True, help="the row to look at")
    parser.add_argument("--baseline", default="teacher", help="the row it is compared with (default: teacher)")
    parser.add_argument("--buckets", type=int, default=3, help="groups of reference length (default 3)")
    args = parser.parse_args(argv)
    runs = [merge.load_run(folder, label) for folder, label in zip(args.runs, merge.labels(args.runs))]
    merge.check_alike(runs, runs[0].rows[0]["name"])  # one test set, references and teacher
    print(bucket_table(runs, args.model, args.baseline, args.buckets))


if __name__ == "__main__":
    main()
