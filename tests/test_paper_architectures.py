"""The paper's students keep their teacher's encoder: their sizes match the paper's table."""
import pytest
from fairseq.models import ARCH_CONFIG_REGISTRY
from omegaconf import OmegaConf, open_dict

from utils import model

# docs/reproducing.md (the WD paper, WMT14 En-De): student parameters / teacher parameters.
PAPER_RATIOS = {
    ("wd_transformer_base", "wd_transformer_tiny"): 0.57,
    ("wd_transformer_base", "wd_transformer_small"): 0.83,
    ("wd_transformer_big", "wd_transformer_big_tiny"): 0.53,
    ("wd_transformer_big", "wd_transformer_big_small"): 0.76,
    ("wd_transformer_deep", "wd_transformer_deep_tiny"): 0.81,
    ("wd_transformer_deep", "wd_transformer_deep_small"): 0.92,
}


def parameters(arch):
    return sum(p.numel() for p in model(arch, vocab=(32000, 32000)).parameters())


@pytest.mark.parametrize("teacher,student", sorted(PAPER_RATIOS))
def test_student_size_ratio_is_the_papers(teacher, student):
    """At a 32k joint vocabulary with separate source, target and output embeddings (the authors')."""
    ratio = parameters(student) / parameters(teacher)
    assert ratio == pytest.approx(PAPER_RATIOS[teacher, student], abs=0.03)


@pytest.mark.parametrize("teacher", ["base", "big", "deep"])
def test_students_keep_the_teachers_encoder(teacher):
    arch = {"base": "wd_transformer"}.get(teacher, f"wd_transformer_{teacher}")
    t = model(f"wd_transformer_{teacher}")
    t_encoder = {k: p.shape for k, p in t.encoder.named_parameters()}
    for size in ("tiny", "small"):
        s = model(f"{arch}_{size}")
        assert {k: p.shape for k, p in s.encoder.named_parameters()} == t_encoder
        assert s.decoder.cfg.decoder.normalize_before == t.decoder.cfg.decoder.normalize_before
        assert len(s.decoder.layers) == {"tiny": 1, "small": 2}[size]
        width = s.decoder.embed_tokens.embedding_dim
        assert width == t.encoder.embed_tokens.embedding_dim // (2 if size == "tiny" else 1)


@pytest.mark.parametrize("arch,widths", [("wd_transformer_tiny", (16, 32)), ("wd_transformer_big_tiny", (16, 32)),
                                         ("wd_transformer_small", (32, 64))])
def test_hydra_model_config_keeps_the_given_encoder_width(arch, widths):
    """fairseq-hydra-train applies the arch to a DictConfig: the decoder follows the configured encoder."""
    cfg = OmegaConf.create({"_name": arch, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64})
    with open_dict(cfg):
        ARCH_CONFIG_REGISTRY[arch](cfg)
    assert (cfg.decoder_embed_dim, cfg.decoder_ffn_embed_dim) == widths
