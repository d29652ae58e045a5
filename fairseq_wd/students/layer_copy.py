"""Layer-copy initialisation (DistilBERT / DistilBART "shrink"): a student of the teacher's width whose
weights are copies of teacher tensors, for `fairseq-train --finetune-from-model`.

Embeddings, output projection and final norms are copied by name; student layer i of each stack
takes the teacher layer DistilBART's tables pick (first and last kept). This only works at the
teacher's width; a narrower student (TINY's decoder) needs Weight Distillation instead.
"""
import argparse

from fairseq.data import Dictionary
from fairseq.models import ARCH_CONFIG_REGISTRY
from fairseq.models.transformer import TransformerModel

from ..checkpoints import CheckpointError, model_args

# DistilBART's LAYERS_TO_COPY (seq2seq-distillation/make_student.py): teacher depth -> student depth -> layers.
LAYERS_TO_COPY = {
    6: {1: [0], 2: [0, 5], 3: [0, 2, 5], 4: [0, 1, 3, 5], 6: list(range(6))},
    12: {1: [0], 2: [0, 6], 3: [0, 6, 11], 4: [0, 4, 8, 11], 6: [0, 2, 4, 7, 9, 11],
         9: [0, 1, 2, 4, 5, 7, 9, 10, 11], 12: list(range(12))},
}
# Dimensions the student takes from its own architecture, not from the teacher.
STUDENT_OWNED = ("encoder_layers", "decoder_layers", "decoder_embed_dim", "decoder_ffn_embed_dim",
                 "decoder_output_dim", "decoder_input_dim", "arch", "_name")


def layers_to_copy(n_teacher, n_student, explicit=None):
    if explicit:
        layers = [int(x) for x in explicit.split(",")]
        if len(layers) != n_student or not all(0 <= x < n_teacher for x in layers):
            raise ValueError(f"layer map {explicit!r}: need {n_student} 0-based teacher layers in [0, {n_teacher})")
        return layers
    if n_student > n_teacher:
        raise ValueError(f"student has {n_student} layers, the teacher only {n_teacher}")
    table = LAYERS_TO_COPY.get(n_teacher, {}).get(n_student)
    if table:
        return table
    if n_student == 1:
        return [0]
    return [round(i * (n_teacher - 1) / (n_student - 1)) for i in range(n_student)]


class SizedDictionaries:
    """Dictionaries of the teacher's sizes: enough to build the student's module tree."""

    def __init__(self, n_src, n_tgt):
        self.source_dictionary, self.target_dictionary = Dictionary(), Dictionary()
        for d, n in ((self.source_dictionary, n_src), (self.target_dictionary, n_tgt)):
            for i in range(n - len(d)):
                d.add_symbol(f"<{i}>")


def student_from_teacher(teacher_state, arch, overrides, encoder_map=None, decoder_map=None):
    """(student state dict, student args, [(student key, teacher key)])."""
    t_args, t_weights = model_args(teacher_state), teacher_state["model"]
    s_args = argparse.Namespace(**{k: v for k, v in vars(t_args).items() if k not in STUDENT_OWNED})
    for k, v in overrides.items():
        setattr(s_args, k, v)
    s_args.arch = arch
    ARCH_CONFIG_REGISTRY[arch](s_args)
    dicts = SizedDictionaries(t_weights["encoder.embed_tokens.weight"].shape[0],
                              t_weights["decoder.embed_tokens.weight"].shape[0])
    student = TransformerModel.build_model(s_args, dicts)
    maps = {stack: layers_to_copy(getattr(t_args, f"{stack}_layers"), getattr(s_args, f"{stack}_layers"), m)
            for stack, m in (("encoder", encoder_map), ("decoder", decoder_map))}
    state, copied = {}, []
    for key, param in student.state_dict().items():
        parts = key.split(".")
        if len(parts) > 3 and parts[1] == "layers":
            parts[2] = str(maps[parts[0]][int(parts[2])])
        t_key = ".".join(parts)
        if t_key not in t_weights:
            raise CheckpointError(f"teacher has no {t_key!r} for student {key!r}: architectures are incompatible")
        if t_weights[t_key].shape != param.shape:
            raise CheckpointError(
                f"student {key} has shape {tuple(param.shape)} but teacher {t_key} has "
                f"{tuple(t_weights[t_key].shape)}: layer copying needs the teacher's width. For a narrower "
                f"student (e.g. wd_transformer_tiny) use Weight Distillation (--task weight_distillation)."
            )
        state[key] = t_weights[t_key]
        copied.append((key, t_key))
    return state, s_args, copied


def copied_layers(copied):
    """[(stack, student layer, teacher layer)] of `student_from_teacher`'s copies, sorted."""
    return sorted({(s.split(".")[0], s.split(".")[2], t.split(".")[2]) for s, t in copied if ".layers." in s})
