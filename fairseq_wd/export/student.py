"""Exporting the plugin's checkpoints for deployment without the plugin: any of its checkpoints (teacher,
KD or WD student, a WD phase-1 one materialised, an SPS one unrolled) as the student a user ships (one
clean file of fairseq's `transformer`, checkpoints.plain_checkpoint), or as a CTranslate2 model folder.
"""
import dataclasses
import os

from fairseq import checkpoint_utils

from ..checkpoints import (MULTILINGUAL, CheckpointError, load_state, model_args, plain_task_config,
                          save_plain_transformer, task_config)
from . import ct2
from ..models.sps_transformer import unrolled
from ..tasks.multi_simple_epoch import ExtraTrainDataConfig
from ..tasks.teacher_aware import TeacherConfig
from ..tasks.weight_distillation import PHASE1_TASKS, GeneratorConfig

PLUGIN_OPTIONS = {f.name for c in (TeacherConfig, ExtraTrainDataConfig, GeneratorConfig) for f in dataclasses.fields(c)}


def read(path, teacher_path=None, data=None):
    """A checkpoint's state, read once, with a moved teacher or data-bin given anew."""
    overrides = {k: v for k, v in (("teacher_path", teacher_path), ("data", data)) if v}
    return load_state(path, "checkpoint to export", overrides)


def is_phase1(state):
    return task_config(state).get("_name") in PHASE1_TASKS


def load_phase1(path, state=None):
    """The WeightDistillationModel of a phase-1 checkpoint (its `state`, if read already) in float32 eval mode."""
    state = state or read(path)
    name = task_config(state).get("_name")
    if name not in PHASE1_TASKS:
        raise CheckpointError(f"{path} was trained with --task {name}, not {' or '.join(PHASE1_TASKS)}: "
                              "--show-plan is for WD phase-1 checkpoints")
    models, _, _ = checkpoint_utils.load_model_ensemble_and_task([path], state=state)
    return models[0].float().eval()


def translation_config(task_cfg, data=None):
    """The checkpoint's task config reduced to what vanilla `translation` knows (its languages found in the
    data-bin when the training inferred them), or, for the multilingual tasks, to
    `translation_multi_simple_epoch`'s options (the plugin's dropped)."""
    from fairseq.data.data_utils import infer_language_pair

    if str(task_cfg.get("_name", "")).endswith("multi_simple_epoch"):
        plain = {k: v for k, v in task_cfg.items() if k not in PLUGIN_OPTIONS and k != "user_dir"}
        plain["_name"] = plain["task"] = MULTILINGUAL
        return plain_task_config(plain)
    plain = plain_task_config(task_cfg)
    data = data or str(plain.get("data") or "").split(os.pathsep)[0]
    if not (plain.get("source_lang") and plain.get("target_lang")) and data and os.path.isdir(data):
        try:
            plain["source_lang"], plain["target_lang"] = infer_language_pair(data)
        except Exception:  # no or several pairs: the user gives --source-lang / --target-lang as for any model
            pass
    return plain


def model_for_export(path, teacher_path=None, data=None, state=None, phase1=None):
    """(state dict, model args, task config) of any plugin checkpoint as a plain Transformer: a WD
    phase-1 one is materialised, an SPS one unrolled. `state`: the checkpoint, if read already (with
    the overrides); `phase1`: its phase-1 model, if loaded already."""
    state = state or read(path, teacher_path, data)
    if is_phase1(state):
        model = phase1 or load_phase1(path, state)
        return model.materialize_().state_dict(), model_args(state), task_config(state)
    weights, args = unrolled(state["model"], model_args(state))
    return weights, args, task_config(state)


def to_fairseq(path, output, teacher_path=None, data=None, state=None, phase1=None):
    """Writes the checkpoint at `path` as the student a user ships (checkpoints.plain_checkpoint): one
    file that vanilla fairseq and ct2-fairseq-converter load without --user-dir; returns its number of
    parameters. Keyword arguments as model_for_export's."""
    weights, args, task_cfg = model_for_export(path, teacher_path, data, state, phase1)
    save_plain_transformer(output, weights, args, translation_config(task_cfg, data))
    seen = {(v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape)): v.numel()  # tied ones once
            for k, v in weights.items() if v.is_floating_point() and not k.endswith("_float_tensor")}
    return sum(seen.values())


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
        from ..datasets.data_bin import dictionaries
        from ..shortlist.vmap import read_vmap

        read_vmap(vmap, *dictionaries(data, src, tgt))
    ct2.convert(weights, args, data, src, tgt, output, quantization, vmap)


def multilingual_to_ctranslate2(weights, args, task_cfg, data, output, quantization):
    """A multilingual model as one CTranslate2 model for all its pairs: the source and target dictionaries
    with their language tokens exactly as fairseq's translation_multi_simple_epoch makes them from the
    checkpoint's task options (languages.Languages: --fixed-dictionary, --source-dict/--target-dict or
    `data`'s dict.LANG.txt, --lang-dict, --langtoks, ...), checked against the model's embedding rows
    before and against the written vocabularies, symbol by symbol, after the conversion; and every pair's
    language tokens (languages.json) with which decoding puts the source's first and forces the target's,
    as CTranslate2 documents for M2M-100. The folder appears at `output` only once checked."""
    import json
    import shutil
    import tempfile

    from .. import languages

    if task_cfg.get("lang_tok_replacing_bos_eos"):
        raise CheckpointError("--lang-tok-replacing-bos-eos models cannot be converted (CTranslate2 keeps </s> as "
                              "the first decoder token); retrain without it")
    if os.path.exists(output):
        raise ct2.DeployError(f"{output} exists; choose another --output")
    langs = languages.Languages(task_cfg, data, where="the checkpoint's task options")
    sides = (("source", langs.source_dictionary, ("encoder.embed_tokens.weight",)),
             ("target", langs.target_dictionary, ("decoder.embed_tokens.weight", "decoder.output_projection.weight")))
    for side, dictionary, keys in sides:
        for key in (k for k in keys if k in weights):
            if weights[key].shape[0] != len(dictionary):
                raise CheckpointError(
                    f"the model's {key} has {weights[key].shape[0]} rows, its {side} dictionary as fairseq makes it "
                    f"from the checkpoint's task options {len(dictionary)}: pass --data, the data-bin it was trained "
                    "on (and the --fixed-dictionary / --lang-dict files its checkpoint names)")
    staged = output.rstrip(os.sep) + ".unchecked"
    shutil.rmtree(staged, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        langs.source_dictionary.save(os.path.join(tmp, "dict.src.txt"))
        langs.target_dictionary.save(os.path.join(tmp, "dict.tgt.txt"))
        ct2.convert(weights, args, tmp, "src", "tgt", staged, quantization, languages=langs.token_settings())
    try:
        vocabularies = {name: os.path.join(staged, f"{name}_vocabulary.json") for name in ("shared", "source", "target")}
        shared = os.path.isfile(vocabularies["shared"])
        for side, dictionary, _ in sides:
            path = vocabularies["shared" if shared else side]
            with open(path, encoding="utf-8") as f:
                languages.check_vocabulary(f"CTranslate2's {os.path.basename(path)}", json.load(f), dictionary)
        os.rename(staged, output)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return output
