"""Scores a finished pipeline run's hypotheses again on the test sentences that the current split keeps
(those whose source does not occur in train). A run made before that rule scored all of its cut; its
models are unchanged by the rule, since train stays as cut.

    python docs/results/cpu-en-ro-3000-updates/rescore_dedup.py runs/cpu
"""
import glob
import json
import os
import sys

import sacrebleu


def main(work):
    pair = os.path.basename(glob.glob(os.path.join(work, "data-bin", "train.*-*.*.idx"))[0]).split(".")[1]
    src, tgt = pair.split("-")

    def read(name):
        with open(os.path.join(work, name), encoding="utf-8") as f:
            return f.read().splitlines()

    sources, refs, train = read(f"raw/test.{src}"), read(f"raw/test.{tgt}"), set(read(f"raw/train.{src}"))
    keep = [i for i, s in enumerate(sources) if s not in train]
    print(f"{len(keep)} of {len(sources)} test sentences kept ({len(sources) - len(keep)} sources occur in train)\n")
    print("| model | BLEU, all | BLEU, kept |\n|---|---|---|")
    for row in json.load(open(os.path.join(work, "bench", "bench.json")))["models"]:
        hyps = read(f"bench/{row['name']}.hyp")
        every = sacrebleu.corpus_bleu(hyps, [refs]).score  # = the bench's BLEU
        kept = sacrebleu.corpus_bleu([hyps[i] for i in keep], [[refs[i] for i in keep]]).score
        print(f"| {row['name']} | {every:.2f} | {kept:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1])
