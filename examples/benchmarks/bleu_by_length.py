"""Where a row loses against its baseline: the test sentences sorted by reference length and split into
--buckets groups of equal size (sentences of one length at a boundary may fall in both groups), and per
kept run and seed the row's corpus BLEU (or chrF) minus the baseline's within each group and over all
(sacrebleu, with the tokenizer and case the runs were scored with). Reads bench outputs only.

    python examples/benchmarks/bleu_by_length.py docs/results/cpu-en-ro/runs/* \\
        --model "TINY WD (orig+teacher-out, generator then CE)" --baseline teacher [--metric chrf]
"""
import argparse

from fairseq_wd.bench import merge, scoring


def length_groups(references, n_groups):
    """Sentence indices sorted by reference length (words), cut into `n_groups` groups of equal size (the
    last takes the remainder): together they hold every index once."""
    order = sorted(range(len(references)), key=lambda i: len(references[i].split()))
    return [order[k * len(order) // n_groups:(k + 1) * len(order) // n_groups] for k in range(n_groups)]


def bucket_table(runs, model, baseline, n_groups, metric="bleu"):
    """Markdown: a row per seed pair of each run (fairseq-wd-merge's pairs and labels), a column per length
    group (its word range) and one over all sentences."""
    scorer = merge.scorer_for(runs)
    references = runs[0].references[0]
    groups = length_groups(references, n_groups)
    words = [[len(references[i].split()) for i in g] for g in groups]
    header = [f"{min(w)}-{max(w)} words" for w in words]
    lines = [f"{model} minus {baseline}, test {dict(bleu='BLEU', chrf='chrF')[metric]} by reference length "
             f"({len(references)} sentences, {n_groups} groups of equal size):", "",
             "| run | " + " | ".join(header) + " | all |", "|---" * (len(header) + 2) + "|"]
    for run in runs:
        for name in (model, baseline):
            if name not in run.hypotheses:
                raise SystemExit(f"run {run.label} has no row {name!r}")
        systems, bases = run.hypotheses[model], run.hypotheses[baseline]
        for i, j in scoring.seed_pairs(len(systems), len(bases)):
            cells = []
            for g in [*groups, range(len(references))]:
                refs = [[reference[k] for k in g] for reference in run.references]
                score = [scorer.metrics()[metric].corpus_score([h[k] for k in g], refs).score
                         for h in (systems[i], bases[j])]
                cells.append(f"{score[0] - score[1]:+.2f}")
            lines.append(f"| {merge.pair_label(run, i, j, len(systems), len(bases))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_BENCH_DIR", help="kept bench outputs sharing a test set")
    parser.add_argument("--model", required=True, help="the row to look at")
    parser.add_argument("--baseline", default="teacher", help="the row it is compared with (default: teacher)")
    parser.add_argument("--buckets", type=int, default=3, help="groups of reference length (default 3)")
    parser.add_argument("--metric", choices=("bleu", "chrf"), default="bleu")
    args = parser.parse_args(argv)
    try:
        runs = [merge.load_run(folder, label) for folder, label in zip(args.runs, merge.labels(args.runs))]
        merge.check_alike(runs, runs[0].rows[0]["name"])  # one test set, references and teacher
    except merge.MergeError as e:
        raise SystemExit(str(e))
    print(bucket_table(runs, args.model, args.baseline, args.buckets, args.metric))


if __name__ == "__main__":
    main()
