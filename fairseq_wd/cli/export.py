"""`fairseq-wd-export`: any checkpoint of the plugin (teacher, KD or WD student, a WD phase-1 one, an SPS
one) -> the student a user ships, one clean fairseq `transformer` file; or -> a CTranslate2 model folder.

A phase-1 generator is evaluated once in float32 and dropped; an SPS student's reused layers are unrolled.
The file holds the weights and a plain config (explicit dimensions, task `translation`), no optimizer or
trainer state: it loads with `torch.load(weights_only=True)` and in vanilla fairseq without `--user-dir`
(fairseq-generate, fairseq-interactive, TransformerModel.from_pretrained) and in CTranslate2's own
`ct2-fairseq-converter`; phase 2 fine-tunes it with
`fairseq-train --task distillation --finetune-from-model STUDENT.pt`.

    fairseq-wd-export checkpoints/phase1/checkpoint_best.pt --output student.pt
    fairseq-wd-export checkpoints/kd/checkpoint_best.pt --output student.pt
    fairseq-wd-export checkpoints/phase1/checkpoint_best.pt --show-plan
    fairseq-wd-export student.pt --to ctranslate2 --quantization int8 --output student-ct2/
    fairseq-wd-export student.pt --to ctranslate2 --vmap vmap.txt --output student-ct2/   # + its shortlist
"""
import argparse
import os
import sys

from ..checkpoints import CheckpointError, OutputError
from ..export import ct2
from ..export.student import is_phase1, load_phase1, read, to_ctranslate2, to_fairseq
from ..modules.weight_plan import format_plan


def get_parser():
    p = argparse.ArgumentParser(prog="fairseq-wd-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="any checkpoint of the plugin: teacher, KD or WD student, WD phase 1 "
                                      "(fairseq-train --task weight_distillation, or "
                                      "weight_distillation_multi_simple_epoch), SPS student")
    p.add_argument("--output", help="student checkpoint (or CTranslate2 folder) to write (never overwritten)")
    p.add_argument("--to", choices=["fairseq", "ctranslate2"], default="fairseq",
                   help="fairseq: a plain transformer checkpoint (default); ctranslate2: a CTranslate2 model folder")
    p.add_argument("--quantization", choices=ct2.QUANTIZATIONS, default="int8",
                   help="CTranslate2 weight type (default int8; none = float32 as trained)")
    p.add_argument("--vmap", metavar="VMAP_TXT",
                   help="with --to ctranslate2: a lexical shortlist (fairseq-wd-shortlist) copied into the folder as "
                        "vmap.txt, for translate_batch(use_vmap=True); checked against the model's dictionaries first")
    p.add_argument("--show-plan", action="store_true", help="print which teacher tensors generate each student tensor")
    p.add_argument("--teacher-path", help="teacher checkpoint, if it moved since phase 1")
    p.add_argument("--data", help="data-bin with the dictionaries, if it moved since the training")
    return p


def main(argv=None):
    p = get_parser()
    a = p.parse_args(argv)
    if not a.output and not a.show_plan:
        p.error("give --output STUDENT.pt and/or --show-plan")
    if a.output and os.path.exists(a.output):
        sys.exit(f"fairseq-wd-export: {a.output} exists; choose another --output")
    if a.vmap and a.to != "ctranslate2":
        p.error("--vmap is for --to ctranslate2 (fairseq decodes a shortlist with --task distillation --shortlist)")
    if a.to == "ctranslate2":
        if not a.output:
            p.error("--to ctranslate2 needs --output FOLDER")
        try:
            to_ctranslate2(a.checkpoint, a.output, a.quantization, a.teacher_path, a.data, a.vmap)
        except (CheckpointError, ct2.DeployError, OutputError, ValueError, FileNotFoundError) as e:
            sys.exit(f"fairseq-wd-export: {e}")  # a VmapError is a ValueError
        with_vmap = f", with the shortlist {a.vmap} as vmap.txt" if a.vmap else ""
        print(f"wrote {a.output}: CTranslate2 model ({a.quantization}) of {a.checkpoint}{with_vmap}")
        return
    try:
        state = read(a.checkpoint, a.teacher_path, a.data)
        model = load_phase1(a.checkpoint, state) if a.show_plan or is_phase1(state) else None
    except (CheckpointError, ValueError, FileNotFoundError) as e:
        sys.exit(f"fairseq-wd-export: {e}")
    if a.show_plan:
        print(format_plan(model.plan))
    if a.output:
        try:
            params = to_fairseq(a.checkpoint, a.output, a.teacher_path, a.data, state=state, phase1=model)
        except (CheckpointError, OutputError, ValueError) as e:
            sys.exit(f"fairseq-wd-export: {e}")
        print(f"wrote {a.output}: {params} parameters, fairseq transformer, weights and config only "
              "(loads without --user-dir)")


if __name__ == "__main__":
    main()
