"""`fairseq-wd-init-student`: a student checkpoint made by copying teacher layers (DistilBERT /
DistilBART "shrink"), for `fairseq-train --finetune-from-model STUDENT.pt`.

Embeddings, output projection and final norms are copied by name; student layer i of each stack
takes the teacher layer DistilBART's tables pick (first and last kept). This only works at the
teacher's width; a narrower student (TINY's decoder) needs Weight Distillation instead.
"""
import argparse
import os
import sys

from fairseq.models.transformer import TransformerModel

import fairseq_wd  # noqa: F401  (registers the wd_* architectures)

from ..checkpoints import CheckpointError, OutputError, load_state, save_plain_transformer
from ..students.layer_copy import copied_layers, student_from_teacher


def get_parser():
    parser = argparse.ArgumentParser(prog="fairseq-wd-init-student", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher-path", required=True, help="teacher checkpoint")
    parser.add_argument("--arch", required=True, help="student architecture, e.g. wd_transformer_small")
    parser.add_argument("--output", required=True, help="student checkpoint to write (never overwritten)")
    parser.add_argument("--encoder-layer-map", help="0-based teacher layers per student encoder layer, e.g. 0,2,5")
    parser.add_argument("--decoder-layer-map", help="0-based teacher layers per student decoder layer")
    arch_args = parser.add_argument_group("architecture overrides (any fairseq transformer option)")
    TransformerModel.add_args(arch_args)
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    if os.path.exists(args.output):
        sys.exit(f"fairseq-wd-init-student: {args.output} exists; choose another --output")
    known = {"teacher_path", "arch", "output", "encoder_layer_map", "decoder_layer_map"}
    overrides = {k: v for k, v in vars(args).items() if k not in known and v is not None}
    try:
        teacher = load_state(args.teacher_path, "teacher checkpoint")
        state, s_args, copied = student_from_teacher(teacher, args.arch, overrides,
                                                     args.encoder_layer_map, args.decoder_layer_map)
    except (CheckpointError, ValueError) as e:
        sys.exit(f"fairseq-wd-init-student: {e}")
    for stack, s_layer, t_layer in copied_layers(copied):
        print(f"{stack} layer {s_layer} <- teacher layer {t_layer}")
    try:
        save_plain_transformer(args.output, state, s_args, teacher["cfg"].get("task"))
    except OutputError as e:
        sys.exit(f"fairseq-wd-init-student: {e}")
    print(f"wrote {args.output}: {len(copied)} tensors copied from {args.teacher_path}")


if __name__ == "__main__":
    main()
