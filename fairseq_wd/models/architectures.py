"""The WD paper's teachers (base, big, deep 48-6) and their students, registered for fairseq's own
`transformer` model.

A student keeps its teacher's encoder and shrinks the decoder, as in the paper: TINY has one decoder
layer at half the encoder width, SMALL two at full width. `wd_transformer_tiny/small` are the base
teacher's students; `wd_transformer_big_tiny`, `wd_transformer_deep_small`, ... the big and deep
teachers' (1024-wide encoder; 48-layer pre-norm encoder with a pre-norm decoder). Names carry a `wd_`
prefix because fairseq already owns `transformer_tiny`. Every value is set with
`getattr(args, name, default)`, so a dimension given on the command line wins over the preset.
"""
import argparse

from omegaconf import OmegaConf
from fairseq.models import register_model_architecture
from fairseq.models.transformer.transformer_legacy import base_architecture


def _set(args, name, value):
    setattr(args, name, getattr(args, name, value))


@register_model_architecture("transformer", "wd_transformer_base")
def wd_transformer_base(args):
    """Base teacher: 6-6, 512/2048, 8 heads, post-norm (fairseq's transformer_wmt_en_de)."""
    _set(args, "encoder_embed_dim", 512)
    _set(args, "encoder_ffn_embed_dim", 2048)
    _set(args, "encoder_layers", 6)
    _set(args, "encoder_attention_heads", 8)
    _set(args, "decoder_layers", 6)
    _set(args, "decoder_attention_heads", args.encoder_attention_heads)
    base_architecture(args)


@register_model_architecture("transformer", "wd_transformer_big")
def wd_transformer_big(args):
    """Big teacher: 6-6, 1024/4096, 16 heads, dropout 0.3."""
    _set(args, "encoder_embed_dim", 1024)
    _set(args, "encoder_ffn_embed_dim", 4096)
    _set(args, "encoder_attention_heads", 16)
    _set(args, "dropout", 0.3)
    wd_transformer_base(args)


@register_model_architecture("transformer", "wd_transformer_deep")
def wd_transformer_deep(args):
    """Deep teacher: 48-layer pre-norm encoder, 6-layer decoder, 512/2048 (pre-norm trains deep)."""
    _set(args, "encoder_layers", 48)
    _set(args, "encoder_normalize_before", True)
    _set(args, "decoder_normalize_before", True)
    wd_transformer_base(args)


def _student(name, teacher_arch, decoder_layers, half_width):
    def arch(args):
        if half_width:
            if getattr(args, "share_all_embeddings", False):
                raise ValueError(
                    f"{name} has a decoder narrower than its encoder, so encoder and decoder cannot share "
                    "one embedding matrix: drop --share-all-embeddings. Its decoder then gets embeddings of its "
                    "own width (Weight Distillation generates them from the teacher's, shared or not), which "
                    "--share-decoder-input-output-embed ties to its output layer. A SMALL student (decoder at "
                    "full width) can keep --share-all-embeddings."
                )
            # the encoder widths this student keeps; args is a Namespace, or a DictConfig under hydra
            teacher = argparse.Namespace(**(dict(args.items()) if OmegaConf.is_config(args) else vars(args)))
            teacher_arch(teacher)
            _set(args, "decoder_embed_dim", teacher.encoder_embed_dim // 2)
            _set(args, "decoder_ffn_embed_dim", teacher.encoder_ffn_embed_dim // 2)
        _set(args, "decoder_layers", decoder_layers)
        teacher_arch(args)

    size = "1 decoder layer at half the encoder width" if half_width else f"{decoder_layers} decoder layers"
    arch.__name__ = name
    arch.__doc__ = f"Student of {teacher_arch.__name__}: its encoder, {size}."
    return register_model_architecture("transformer", name)(arch)


wd_transformer_tiny = _student("wd_transformer_tiny", wd_transformer_base, 1, half_width=True)
wd_transformer_small = _student("wd_transformer_small", wd_transformer_base, 2, half_width=False)
wd_transformer_big_tiny = _student("wd_transformer_big_tiny", wd_transformer_big, 1, half_width=True)
wd_transformer_big_small = _student("wd_transformer_big_small", wd_transformer_big, 2, half_width=False)
wd_transformer_deep_tiny = _student("wd_transformer_deep_tiny", wd_transformer_deep, 1, half_width=True)
wd_transformer_deep_small = _student("wd_transformer_deep_small", wd_transformer_deep, 2, half_width=False)
