"""`fairseq-wd-average-checkpoints`: the teacher's last N checkpoints averaged into one, as the WD
authors do before distilling.

fairseq's own `scripts/average_checkpoints.py` is not part of its pip package; this is the same
average (parameters summed in float and divided by N, everything else from the newest checkpoint),
read with fairseq's weights-only loader and written aside then renamed, never over an existing file.

    fairseq-wd-average-checkpoints --inputs checkpoints/teacher --num-epoch-checkpoints 5 \\
        --output checkpoints/teacher/checkpoint.avg5.pt
"""
import argparse
import os
import sys

import torch

from ..checkpoints import CheckpointError
from ..teacher.average import average, last_checkpoints


def get_parser():
    p = argparse.ArgumentParser(prog="fairseq-wd-average-checkpoints", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inputs", nargs="+", required=True,
                   help="checkpoint files, or one save dir with --num-epoch/update-checkpoints")
    p.add_argument("--output", required=True, help="averaged checkpoint to write (must not exist)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--num-epoch-checkpoints", type=int, help="average the last N checkpointN.pt of the dir")
    group.add_argument("--num-update-checkpoints", type=int, help="average the last N checkpoint_E_U.pt of the dir")
    return p


def main(argv=None):
    a = get_parser().parse_args(argv)
    if os.path.exists(a.output):
        sys.exit(f"error: {a.output} exists; remove it or choose another --output (it is never overwritten).")
    n, kind = (a.num_epoch_checkpoints, "epoch") if a.num_epoch_checkpoints else (a.num_update_checkpoints, "update")
    try:
        if n:
            if len(a.inputs) != 1 or not os.path.isdir(a.inputs[0]):
                raise CheckpointError(f"--num-{kind}-checkpoints takes one save dir as --inputs, got {a.inputs}")
            paths = last_checkpoints(a.inputs[0], n, kind)
        else:
            paths = a.inputs
        state = average(paths)
    except CheckpointError as e:
        sys.exit(f"error: {e}")
    tmp = a.output + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, a.output)
    print(f"averaged {len(paths)} checkpoints into {a.output}:\n  " + "\n  ".join(paths))


if __name__ == "__main__":
    main()
