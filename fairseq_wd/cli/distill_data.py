"""`fairseq-wd-distill-data`: the teacher's beam output for a split, as a new binarized data-bin.

Takes every option of `fairseq-generate` (beam, lenpen, batch size, fp16, ...) plus --dest.
Sentences stay in their original order with the same dictionaries, so the result trains directly
with `fairseq-train` (the valid/test splits of the source data-bin are copied beside it).

The split is cut into chunks of --chunk-size sentences; each finished chunk is saved at once, so a
killed run resumes where it stopped. --num-shards/--shard-id give chunk c to shard c % num_shards,
for many GPUs or machines sharing one --dest; whichever shard finishes last merges. With
--save-topk K the teacher's top-K log-probabilities of every target token are stored too, for
offline `logit_kd` (no teacher at training time). The work is done by `fairseq_wd.teacher.output`.
"""
import logging
import sys

import fairseq_wd  # noqa: F401  (compat fixes)
from fairseq import options

from ..checkpoints import DISK_ERRORS, CheckpointError, OutputError
from ..teacher.output import DistillDataError, distill

logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO, stream=sys.stdout)


def get_parser():
    parser = options.get_generation_parser()
    group = parser.add_argument_group("distill-data")
    group.add_argument("--dest", required=True, help="output data-bin (created; finished chunks kept there)")
    group.add_argument("--chunk-size", type=int, default=2000, help="sentences per resumable unit of work")
    group.add_argument("--save-topk", type=int, default=0, help="also store the teacher's top-K log-probs per target token")
    group.add_argument("--teacher-dict", help="the teacher's own dictionaries (its data-bin, or one joined dict.txt): "
                                              "every symbol must match the data's; without it only the sizes can "
                                              "be checked (a checkpoint holds no dictionary)")
    return parser


def main(argv=None):
    args = options.parse_args_and_arch(get_parser(), argv)
    try:
        distill(args)
    except (DistillDataError, CheckpointError) as e:
        sys.exit(f"fairseq-wd-distill-data: {e}")
    except OutputError as e:
        sys.exit(f"fairseq-wd-distill-data: {e}; finished chunks are kept")
    except OSError as e:
        if e.errno not in DISK_ERRORS:
            raise
        sys.exit(f"fairseq-wd-distill-data: {e}. Free disk space or fix the permissions, then rerun: finished "
                 "chunks are kept, the data-bin is written again")


if __name__ == "__main__":
    main()
