"""The WD paper's teachers (base, big, deep 48-6) and students (TINY 6-1 half-width decoder,
SMALL 6-2), registered for fairseq's own `transformer` model.

Names carry a `wd_` prefix because fairseq already owns `transformer_tiny`. Every value is set
with `getattr(args, name, default)`, so a dimension given on the command line wins over the preset.
"""
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


@register_model_architecture("transformer", "wd_transformer_tiny")
def wd_transformer_tiny(args):
    """TINY student: 6-layer encoder at the encoder width, 1-layer decoder at half that width
    (512 -> 256 / FFN 1024; 1024 -> 512 / 2048 for a big teacher's encoder width)."""
    if getattr(args, "share_all_embeddings", False):
        raise ValueError(
            "wd_transformer_tiny has a decoder narrower than its encoder, so encoder and decoder "
            "cannot share one embedding matrix: drop --share-all-embeddings "
            "(--share-decoder-input-output-embed still works)."
        )
    _set(args, "encoder_embed_dim", 512)
    _set(args, "encoder_ffn_embed_dim", 2048)
    _set(args, "decoder_embed_dim", args.encoder_embed_dim // 2)
    _set(args, "decoder_ffn_embed_dim", args.encoder_ffn_embed_dim // 2)
    _set(args, "decoder_layers", 1)
    wd_transformer_base(args)


@register_model_architecture("transformer", "wd_transformer_small")
def wd_transformer_small(args):
    """SMALL student: 6-layer encoder, 2-layer decoder, full width."""
    _set(args, "decoder_layers", 2)
    wd_transformer_base(args)
