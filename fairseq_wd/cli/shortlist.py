"""`fairseq-wd-shortlist`: a data-bin -> a lexical shortlist (CTranslate2's vmap.txt) for faster decoding.

Per source token the top-K target tokens by p(t|s) of an IBM-1 model over the train split (of DATA_BIN,
or of --train-data, e.g. the teacher output of fairseq-wd-distill-data), plus the --frequent most
frequent target tokens (always allowed), plus the source token itself with a joint dictionary. Prints
how much of the valid references the shortlist keeps at fairseq-generate's batching.

    fairseq-wd-shortlist data-bin --output vmap.txt
    fairseq-wd-shortlist data-bin --train-data kd-bin --output vmap.txt --top-k 50 --frequent 100
    fairseq-generate data-bin --user-dir fairseq_wd --task distillation --shortlist vmap.txt --path student.pt ...
    fairseq-wd-export student.pt --to ctranslate2 --vmap vmap.txt --output student-ct2/  # use_vmap=True
    fairseq-wd-bench data-bin --model student=student.pt --shortlist vmap.txt ...        # + shortlist rows
"""
import argparse
import os
import sys

from ..datasets import data_bin
from ..shortlist import vmap as sl


def get_parser():
    p = argparse.ArgumentParser(prog="fairseq-wd-shortlist", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_bin", metavar="DATA_BIN", help="the model's data-bin: its dictionaries, its train split "
                                                        "(unless --train-data) and its valid split (coverage)")
    p.add_argument("--output", required=True, help="vmap.txt to write (never overwritten)")
    p.add_argument("--train-data", metavar="KD_BIN", help="count on this data-bin's train split instead (same "
                                                          "dictionaries), e.g. the teacher's output")
    p.add_argument("--top-k", type=int, default=50, help="targets per source token, by p(t|s) (default 50)")
    p.add_argument("--frequent", type=int, default=100,
                   help="most frequent target tokens, always allowed (default 100)")
    p.add_argument("--iterations", type=int, default=5, help="EM iterations of the IBM-1 model (default 5)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="sentences per batch for the coverage report, as fairseq-generate --batch-size (default 64)")
    p.add_argument("--valid-subset", default="valid", help="split the coverage is measured on (default valid)")
    return p


def main(argv=None):
    p = get_parser()
    a = p.parse_args(argv)
    for name in ("top_k", "frequent", "batch_size", "iterations"):
        if getattr(a, name) < (0 if name in ("top_k", "frequent") else 1):
            p.error(f"--{name.replace('_', '-')} must be {'>= 0' if name in ('top_k', 'frequent') else '>= 1'}")
    if os.path.exists(a.output):
        sys.exit(f"fairseq-wd-shortlist: {a.output} exists; choose another --output or delete it")
    try:
        vmap = sl.build_vmap(a.data_bin, a.train_data, a.top_k, a.frequent, a.iterations)
        src, tgt, _ = data_bin.language_pair(a.data_bin, a.valid_subset)
        src_dict, tgt_dict = data_bin.dictionaries(a.data_bin, src, tgt)
        sl.write_vmap(vmap, a.output, src_dict, tgt_dict)
        report = sl.coverage(sl.Shortlist(vmap, src_dict, tgt_dict), a.data_bin, a.valid_subset, a.batch_size)
    except (sl.VmapError, data_bin.DataBinError, FileNotFoundError) as e:
        sys.exit(f"fairseq-wd-shortlist: {e}")
    print(f"wrote {a.output}: {len(vmap.rules)} source keys x top {a.top_k}, {len(vmap.always)} always "
          f"(from {a.train_data or a.data_bin} train)")
    print(f"{a.valid_subset}, batches of {a.batch_size}: {report}")


if __name__ == "__main__":
    main()
