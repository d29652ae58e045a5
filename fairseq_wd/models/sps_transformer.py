"""`sps_transformer`: fairseq's Transformer whose encoder runs its layers a second time with
Pea-KD's shuffled parameter sharing (`modules/shuffled_sharing.py`).

Same parameters (and parameter count) as the `transformer` of the same arch, deeper in effect:
`--sps-reuse all` doubles the encoder's depth, `top-half` / `bottom-half` add ceil(L/2) layers.
Decoding cost grows with it (docs/methods.md#pea-kd), only in the encoder (run once per sentence in beam search).
Archs: `sps_transformer` (fairseq's base), `sps_transformer_tiny`, `sps_transformer_small`.
"""
from dataclasses import dataclass, field

from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.dataclass.utils import gen_parser_from_dataclass
from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer.transformer_legacy import TransformerModel, base_architecture

from ..modules.shuffled_sharing import REUSE_CHOICES, SWAP_CHOICES, SharedPassLayers, reused_layers
from .architectures import _set, wd_transformer_small, wd_transformer_tiny


@dataclass
class SPSConfig(FairseqDataclass):
    sps_reuse: ChoiceEnum(REUSE_CHOICES) = field(default="all", metadata={
        "help": "encoder layers run a second time with the same parameters: all (Pea-KD's 3-layer student), "
                "top-half (its 6-layer student: the top ceil(L/2)), bottom-half (its SPS2), none"})
    sps_swap: ChoiceEnum(SWAP_CHOICES) = field(default="qk", metadata={
        "help": "qk: the second pass exchanges self-attention query and key projections (SPS); "
                "none: plain sharing (Pea-KD's SPS_no_shuffle)"})


def sps_reused_layers(args):
    """The 0-based encoder layers that an SPS model runs twice ([] for any other model)."""
    if not hasattr(args, "sps_reuse"):
        return []
    return reused_layers(args.encoder_layers, args.sps_reuse)


def effective_encoder_layers(args):
    """Encoder layer outputs per forward pass: physical layers plus the second pass."""
    return args.encoder_layers + len(sps_reused_layers(args))


@register_model("sps_transformer")
class SPSTransformerModel(TransformerModel):
    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        gen_parser_from_dataclass(parser, SPSConfig(), delete_default=True)

    @classmethod
    def build_model(cls, args, task):
        if getattr(args, "encoder_layerdrop", 0) > 0:
            raise ValueError("--encoder-layerdrop cannot be combined with shuffled parameter sharing "
                             "(the second pass would reuse dropped layers): set it to 0")
        model = super().build_model(args, task)
        model.encoder.layers = SharedPassLayers(model.encoder.layers, sps_reused_layers(args), args.sps_swap == "qk")
        return model


def sps_defaults(args):
    for name, f in SPSConfig.__dataclass_fields__.items():
        _set(args, name, f.default)


@register_model_architecture("sps_transformer", "sps_transformer")
def sps_transformer(args):
    sps_defaults(args)
    base_architecture(args)


@register_model_architecture("sps_transformer", "sps_transformer_tiny")
def sps_transformer_tiny(args):
    """TINY (wd_transformer_tiny) with SPS in its encoder."""
    sps_defaults(args)
    wd_transformer_tiny(args)


@register_model_architecture("sps_transformer", "sps_transformer_small")
def sps_transformer_small(args):
    """SMALL (wd_transformer_small) with SPS in its encoder."""
    sps_defaults(args)
    wd_transformer_small(args)


_SWAP_PREFIX = {"self_attn.q_proj.": "self_attn.k_proj.", "self_attn.k_proj.": "self_attn.q_proj."}


def unrolled(state_dict, args):
    """(state dict, args) of the equivalent plain Transformer: the second pass becomes encoder layers
    L, L+1, ... holding copies of the reused layers, query and key exchanged. Same outputs, more
    stored weights; for runtimes without shared layers (CTranslate2)."""
    reuse = sps_reused_layers(args)
    if not reuse:
        return state_dict, args
    n = args.encoder_layers
    out = dict(state_dict)
    for j, i in enumerate(reuse):
        prefix = f"encoder.layers.{i}."
        for key, value in state_dict.items():
            if not key.startswith(prefix):
                continue
            name = key[len(prefix):]
            if args.sps_swap == "qk":
                for a, b in _SWAP_PREFIX.items():
                    if name.startswith(a):
                        name = b + name[len(a):]
                        break
            out[f"encoder.layers.{n + j}.{name}"] = value.clone()
    args = type(args)(**vars(args))
    args.encoder_layers, args.sps_reuse = n + len(reuse), "none"
    return out, args
