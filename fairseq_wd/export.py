"""Exporting the plugin's checkpoints for deployment without the plugin: a WD phase-1 checkpoint as a
plain fairseq `transformer` student, or any of its checkpoints (teacher, KD or WD student, phase 1
too) as a CTranslate2 model folder.
"""
import dataclasses
import os

from fairseq import checkpoint_utils
from fairseq.tasks.translation import TranslationConfig

from .checkpoints import CheckpointError, load_state, model_args, save_plain_transformer, task_config
from .deploy import ct2
from .models.sps_transformer import unrolled
from .tasks.multi_simple_epoch import ExtraTrainDataConfig
from .tasks.teacher_aware import TeacherConfig
from .tasks.weight_distillation import PHASE1_TASKS, GeneratorConfig

MULTILINGUAL = "translation_multi_simple_epoch"
PLUGIN_OPTIONS = {f.name for c in (TeacherConfig, ExtraTrainDataConfig, GeneratorConfig) for f in dataclasses.fields(c)}


def read(path, teacher_path=None, data=None):
    """A checkpoint's state, read once, with a moved teacher or data-bin given anew."""
    overrides = {k: v for k, v in (("teacher_path", teacher_path), ("data", data)) if v}
    return load_state(path, "checkpoint to export", overrides)


def load_phase1(path, state=None):
    """The WeightDistillationModel of a phase-1 checkpoint (its `state`, if read already) in float32 eval mode."""
    state = state or read(path)
    name = task_config(state).get("_name")
    if name not in PHASE1_TASKS:
        raise CheckpointError(f"{path} was trained with --task {name}, not {' or '.join(PHASE1_TASKS)}: "
                              "only WD phase-1 checkpoints need exporting")
    models, _, _ = checkpoint_utils.load_model_ensemble_and_task([path], state=state)
    return models[0].float().eval()


def translation_config(task_cfg):
    """The checkpoint's task config reduced to what vanilla `translation` knows, or, for the multilingual
    tasks, to `translation_multi_simple_epoch`'s options (the plugin's dropped)."""
    if str(task_cfg.get("_name", "")).endswith("multi_simple_epoch"):
        plain = {k: v for k, v in task_cfg.items() if k not in PLUGIN_OPTIONS and k != "user_dir"}
        plain["_name"] = plain["task"] = MULTILINGUAL
        return plain
    known = {f.name for f in dataclasses.fields(TranslationConfig)}
    plain = {k: v for k, v in dict(task_cfg).items() if k in known and isinstance(v, (str, int, float, bool, type(None)))}
    plain["_name"] = "translation"
    return plain


def to_fairseq(model, state, output):
    """Writes the phase-1 `model` (of `state`) as a plain transformer checkpoint, loadable without
    --user-dir; returns its number of parameters."""
    student = model.materialize_()
    task_cfg = translation_config(task_config(state))
    args = model_args(state)  # a legacy task's run stores every option here: keep none of the plugin's
    for k in PLUGIN_OPTIONS | {"user_dir"}:
        args.__dict__.pop(k, None)
    if hasattr(args, "task"):
        args.task = task_cfg["_name"]
    save_plain_transformer(output, student.state_dict(), args, task_cfg)
    return sum(p.numel() for p in student.parameters())


def model_for_export(path, teacher_path=None, data=None):
    """(state dict, model args, task config) of any plugin checkpoint as a plain Transformer: a WD
    phase-1 one is materialised, an SPS one unrolled."""
    state = read(path, teacher_path, data)
    if task_config(state).get("_name") in PHASE1_TASKS:
        model = load_phase1(path, state)
        return model.materialize_().state_dict(), model_args(state), task_config(state)
    weights, args = unrolled(state["model"], model_args(state))
    return weights, args, task_config(state)


def to_ctranslate2(path, output, quantization, teacher_path=None, data=None, vmap=None):
    """Writes the checkpoint at `path` as a CTranslate2 folder; the dictionaries come from `data` or
    the data-bin it was trained on. `vmap`: a shortlist copied in as vmap.txt, checked first against those
    dictionaries (CTranslate2 itself would read an unknown target as <unk> and keep the last of two keys)."""
    from fairseq import utils
    from fairseq.data.data_utils import infer_language_pair

    ct2.require()  # before loading anything
    weights, args, task_cfg = model_for_export(path, teacher_path, data)
    data = data or utils.split_paths(task_cfg.get("data") or "")[0]
    if str(task_cfg.get("_name", "")).endswith("multi_simple_epoch"):
        if vmap is not None:
            raise ct2.DeployError("--vmap: shortlists are bilingual only (one source and one target language)")
        return multilingual_to_ctranslate2(weights, args, task_cfg, data, output, quantization)
    src, tgt = task_cfg.get("source_lang"), task_cfg.get("target_lang")
    if not (src and tgt) and os.path.isdir(data):
        src, tgt = infer_language_pair(data)
    if vmap is not None:
        from .shortlist import dictionaries, read_vmap

        read_vmap(vmap, *dictionaries(data, src, tgt))
    ct2.convert(weights, args, data, src, tgt, output, quantization, vmap)


def multilingual_to_ctranslate2(weights, args, task_cfg, data, output, quantization):
    """A multilingual model as one CTranslate2 model for all its pairs: its joint dictionary with the
    language tokens as both vocabularies, and the token settings (languages.json) with which decoding puts
    the source's token first and forces the target's, as CTranslate2 documents for M2M-100."""
    import tempfile

    from . import multilingual

    joint = multilingual.joint_dictionary(data, task_cfg)
    rows = weights["decoder.output_projection.weight"].shape[0] if "decoder.output_projection.weight" in weights else None
    if rows is not None and rows != len(joint):
        raise CheckpointError(f"the model's output layer has {rows} rows, the joint dictionary of {data} with its "
                              f"language tokens {len(joint)}: pass --data, the data-bin it was trained on")
    with tempfile.TemporaryDirectory() as tmp:
        for side in ("src", "tgt"):
            joint.save(os.path.join(tmp, f"dict.{side}.txt"))
        ct2.convert(weights, args, tmp, "src", "tgt", output, quantization,
                    languages=multilingual.token_settings(task_cfg))
