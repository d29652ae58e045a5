"""`fairseq-wd-export`: a WD phase-1 checkpoint -> a plain fairseq `transformer` student checkpoint;
or any checkpoint of the plugin (teacher, KD or WD student, phase 1 too) -> a CTranslate2 model.

The generator is evaluated once in float32 and dropped. The result has explicit dimensions and its
config as plain containers: it loads with `torch.load(weights_only=True)` and runs in
`fairseq-generate` without `--user-dir`, and phase 2 fine-tunes it with
`fairseq-train --task distillation --finetune-from-model STUDENT.pt`.

    fairseq-wd-export checkpoints/phase1/checkpoint_best.pt --output student.pt
    fairseq-wd-export checkpoints/phase1/checkpoint_best.pt --show-plan
    fairseq-wd-export student.pt --to ctranslate2 --quantization int8 --output student-ct2/
"""
import argparse
import dataclasses
import os
import sys

from fairseq import checkpoint_utils
from fairseq.tasks.translation import TranslationConfig

import fairseq_wd  # noqa: F401  (registers the task and model)

from ..checkpoints import CheckpointError, OutputError, load_state, model_args, save_plain_transformer
from ..deploy import ct2
from ..models.sps_transformer import unrolled
from ..modules.weight_plan import format_plan


def read(path, teacher_path=None, data=None):
    """A checkpoint's state, read once, with a moved teacher or data-bin given anew."""
    overrides = {k: v for k, v in (("teacher_path", teacher_path), ("data", data)) if v}
    return load_state(path, "checkpoint to export", overrides)


def load_phase1(path, state=None):
    """The WeightDistillationModel of a phase-1 checkpoint (its `state`, if read already) in float32 eval mode."""
    state = state or read(path)
    task_cfg = state["cfg"]["task"]
    if task_cfg.get("_name") != "weight_distillation":
        raise CheckpointError(f"{path} was trained with --task {task_cfg.get('_name')}, not weight_distillation: "
                              "only WD phase-1 checkpoints need exporting")
    models, _, _ = checkpoint_utils.load_model_ensemble_and_task([path], state=state)
    return models[0].float().eval()


def translation_config(task_cfg):
    """The checkpoint's task config reduced to what vanilla `translation` knows."""
    known = {f.name for f in dataclasses.fields(TranslationConfig)}
    plain = {k: v for k, v in dict(task_cfg).items() if k in known and isinstance(v, (str, int, float, bool, type(None)))}
    plain["_name"] = "translation"
    return plain


def model_for_export(path, teacher_path=None, data=None):
    """(state dict, model args, task config) of any plugin checkpoint as a plain Transformer: a WD
    phase-1 one is materialised, an SPS one unrolled."""
    state = read(path, teacher_path, data)
    if state["cfg"]["task"].get("_name") == "weight_distillation":
        model = load_phase1(path, state)
        return model.materialize_().state_dict(), model_args(state), state["cfg"]["task"]
    weights, args = unrolled(state["model"], model_args(state))
    return weights, args, state["cfg"]["task"]


def to_ctranslate2(a):
    from fairseq import utils
    from fairseq.data.data_utils import infer_language_pair

    ct2.require()  # before loading anything
    weights, args, task_cfg = model_for_export(a.checkpoint, a.teacher_path, a.data)
    data = a.data or utils.split_paths(task_cfg.get("data") or "")[0]
    src, tgt = task_cfg.get("source_lang"), task_cfg.get("target_lang")
    if not (src and tgt) and os.path.isdir(data):
        src, tgt = infer_language_pair(data)
    ct2.convert(weights, args, data, src, tgt, a.output, a.quantization)
    print(f"wrote {a.output}: CTranslate2 model ({a.quantization}) of {a.checkpoint}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="fairseq-wd-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="WD phase-1 checkpoint (fairseq-train --task weight_distillation); "
                                      "with --to ctranslate2 any checkpoint of the plugin")
    p.add_argument("--output", help="student checkpoint (or CTranslate2 folder) to write (never overwritten)")
    p.add_argument("--to", choices=["fairseq", "ctranslate2"], default="fairseq",
                   help="fairseq: a plain transformer checkpoint (default); ctranslate2: a CTranslate2 model folder")
    p.add_argument("--quantization", choices=ct2.QUANTIZATIONS, default="int8",
                   help="CTranslate2 weight type (default int8; none = float32 as trained)")
    p.add_argument("--show-plan", action="store_true", help="print which teacher tensors generate each student tensor")
    p.add_argument("--teacher-path", help="teacher checkpoint, if it moved since phase 1")
    p.add_argument("--data", help="data-bin with the dictionaries, if it moved since phase 1")
    a = p.parse_args(argv)
    if not a.output and not a.show_plan:
        p.error("give --output STUDENT.pt and/or --show-plan")
    if a.output and os.path.exists(a.output):
        sys.exit(f"fairseq-wd-export: {a.output} exists; choose another --output")
    if a.to == "ctranslate2":
        if not a.output:
            p.error("--to ctranslate2 needs --output FOLDER")
        try:
            return to_ctranslate2(a)
        except (CheckpointError, ct2.DeployError, OutputError, ValueError, FileNotFoundError) as e:
            sys.exit(f"fairseq-wd-export: {e}")
    try:
        state = read(a.checkpoint, a.teacher_path, a.data)
        model = load_phase1(a.checkpoint, state)
    except (CheckpointError, ValueError, FileNotFoundError) as e:
        sys.exit(f"fairseq-wd-export: {e}")
    if a.show_plan:
        print(format_plan(model.plan))
    if a.output:
        student = model.materialize_()
        try:
            save_plain_transformer(a.output, student.state_dict(), model_args(state),
                                   translation_config(state["cfg"]["task"]))
        except OutputError as e:
            sys.exit(f"fairseq-wd-export: {e}")
        print(f"wrote {a.output}: {sum(p.numel() for p in student.parameters())} parameters, "
              f"fairseq transformer (no --user-dir needed)")


if __name__ == "__main__":
    main()
