"""Pea-KD: shuffled parameter sharing (sps_transformer) and pre-training on teacher predictions
(--criterion ptp), as modules and through fairseq-train / fairseq-generate / fairseq-wd-export."""
import copy
import math
import os

import pytest
import torch

from utils import STUDENT, TRAIN_FLAGS, USER_DIR, kd_train, run, valid_metric

import fairseq_wd  # noqa: F401
from fairseq import options
from fairseq.models import ARCH_MODEL_REGISTRY
from fairseq.models.transformer import TransformerModel
from fairseq_wd.students.layer_copy import SizedDictionaries
from fairseq_wd.cli.pipeline import get_parser
from fairseq_wd.pipeline.experiment import Pipeline
from fairseq_wd.recipes import RECIPES
from fairseq_wd.criterions.pkd import layer_map
from fairseq_wd.criterions.ptp import ptp_labels
from fairseq_wd.models.sps_transformer import unrolled
from fairseq_wd.modules.shuffled_sharing import SecondPass, reused_layers

DIMS = ["--encoder-layers", "3", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
        "--encoder-attention-heads", "4", "--decoder-attention-heads", "4", "--dropout", "0"]


def build(arch, *extra):
    args = options.parse_args_and_arch(options.get_training_parser(),
                                       ["unused", "--task", "translation", "--arch", arch, "--user-dir", USER_DIR,
                                        *DIMS, *extra])
    torch.manual_seed(0)
    return ARCH_MODEL_REGISTRY[arch].build_model(args, SizedDictionaries(50, 60)).eval(), args


def test_reused_layer_variants():
    assert reused_layers(3, "all") == [0, 1, 2]
    assert reused_layers(6, "top-half") == [3, 4, 5]      # Pea-KD's 6-layer student
    assert reused_layers(6, "bottom-half") == [0, 1, 2]   # its SPS2
    assert reused_layers(3, "top-half") == [1, 2]
    assert reused_layers(3, "none") == []
    with pytest.raises(ValueError, match="sps-reuse"):
        reused_layers(3, "middle")


@pytest.mark.parametrize("reuse,passes", [("all", [0, 1, 2]), ("top-half", [1, 2])])
def test_sps_reuses_the_same_parameter_objects(reuse, passes):
    sps, _ = build("sps_transformer_tiny", "--sps-reuse", reuse)
    plain, _ = build("wd_transformer_tiny")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(sps) == count(plain)
    assert sps.state_dict().keys() == plain.state_dict().keys()
    layers = sps.encoder.layers
    assert len(layers) == 3
    second = list(layers)[3:]
    assert [type(p) for p in second] == [SecondPass] * len(passes)
    assert all(p.layer is layers[i] for p, i in zip(second, passes))
    states = sps.encoder(torch.randint(4, 50, (2, 5)), torch.tensor([5, 5]), return_all_hiddens=True)
    assert len(states["encoder_states"]) == 1 + 3 + len(passes)


def exchanged_qk(layer):
    twin = copy.deepcopy(layer)
    attn = twin.self_attn
    with torch.no_grad():
        for kind in ("weight", "bias"):
            q, k = getattr(attn.q_proj, kind).clone(), getattr(attn.k_proj, kind).clone()
            getattr(attn.q_proj, kind).copy_(k)
            getattr(attn.k_proj, kind).copy_(q)
    return twin


def test_swapped_pass_is_attention_with_query_and_key_exchanged():
    sps, _ = build("sps_transformer_tiny")
    layer = sps.encoder.layers[1]
    x = torch.randn(5, 2, 32)
    pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    twin = exchanged_qk(layer)
    swapped = SecondPass(layer, swap=True)(x, encoder_padding_mask=pad)
    assert torch.allclose(swapped, twin(x, encoder_padding_mask=pad), atol=1e-6)
    assert not torch.allclose(swapped, layer(x, encoder_padding_mask=pad), atol=1e-3)
    assert torch.equal(SecondPass(layer, swap=False)(x, encoder_padding_mask=pad), layer(x, encoder_padding_mask=pad))
    # gradients of the swapped pass reach the shared parameters, each through the other's slot
    swapped.sum().backward()
    twin(x, encoder_padding_mask=pad).sum().backward()
    assert torch.allclose(layer.self_attn.q_proj.weight.grad, twin.self_attn.k_proj.weight.grad, atol=1e-5)
    assert torch.allclose(layer.self_attn.v_proj.weight.grad, twin.self_attn.v_proj.weight.grad, atol=1e-5)


@pytest.mark.parametrize("extra", [[], ["--sps-reuse", "top-half", "--sps-swap", "none"]])
def test_unrolled_sps_is_the_same_plain_transformer(extra):
    """What CTranslate2 export hands over: the second pass as extra layers of a plain Transformer."""
    sps, args = build("sps_transformer_tiny", *extra)
    state, plain_args = unrolled(sps.state_dict(), args)
    plain = TransformerModel.build_model(plain_args, SizedDictionaries(50, 60)).eval()
    plain.load_state_dict(state, strict=True)
    assert len(plain.encoder.layers) == len(list(sps.encoder.layers))
    src, prev = torch.randint(4, 50, (2, 6)), torch.randint(4, 60, (2, 4))
    lengths = torch.tensor([6, 6])
    assert torch.allclose(sps(src, lengths, prev)[0], plain(src, lengths, prev)[0], atol=1e-5)


def test_pkd_maps_a_deeper_sps_encoder_onto_the_teacher():
    assert layer_map("skip", 6, 3, "encoder") == [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (6, 3)]
    assert layer_map("skip", 2, 6, "encoder") == [(1, 3), (2, 6)]  # unchanged for shallower students
    with pytest.raises(ValueError, match="deeper than the teacher"):
        layer_map("last", 6, 3, "encoder")


def test_ptp_labels_on_a_hand_made_example():
    # four target positions over a 5-word vocabulary; the teacher's probabilities written out
    probs = torch.tensor([[[0.95, 0.02, 0.01, 0.01, 0.01],    # top-1 word 0 == target 0, confident -> 0
                           [0.10, 0.60, 0.10, 0.10, 0.10],    # top-1 word 1 == target 1, 0.6 <= 0.9 -> 1
                           [0.05, 0.05, 0.70, 0.10, 0.10],    # top-1 word 2 != target 3, 0.7 > 0.5  -> 2
                           [0.20, 0.20, 0.20, 0.40, 0.00],    # top-1 word 3 != target 0, 0.4 <= 0.5 -> 3
                           [0.10, 0.10, 0.10, 0.20, 0.50]]])  # 0.5 is not above t2 = 0.5: not confident -> 3
    target = torch.tensor([[0, 1, 3, 0, 1]])
    labels = ptp_labels(torch.log(probs.clamp_min(1e-9)), target, 0.9, 0.5)
    assert labels.tolist() == [[0, 1, 2, 3, 3]]
    assert ptp_labels(torch.log(probs.clamp_min(1e-9)), target, 0.5, 0.5).tolist() == [[0, 0, 2, 3, 3]]


def test_sps_student_trains_with_pkd_decodes_and_exports(data_bin, teacher, tmp_path):
    log = kd_train(data_bin, tmp_path, "--arch", "sps_transformer_tiny", "--sps-reuse", "top-half",
                   "--teacher-path", teacher, "--criterion", "pkd", updates=3).stdout
    assert valid_metric(log, "pkd_loss")
    ckpt = tmp_path / "checkpoint_last.pt"
    state = torch.load(ckpt, weights_only=True)
    assert "encoder.layers.1.self_attn.q_proj.weight" in state["model"]
    assert not any(k.startswith("encoder.layers.2.") for k in state["model"]), "shared layers are stored once"
    out = run("fairseq-generate", data_bin, "--user-dir", USER_DIR, "--path", ckpt, "--gen-subset", "test",
              "--beam", "2", "--batch-size", "8", "--cpu").stdout
    assert sum(line.startswith("H-") for line in out.splitlines()) == 20
    run("fairseq-wd-export", ckpt, "--to", "ctranslate2", "--quantization", "none", "--output", tmp_path / "ct2")
    assert (tmp_path / "ct2" / "model.bin").exists()


def test_ptp_pretrains_then_kd_starts_from_it(data_bin, teacher, tmp_path):
    log = run("fairseq-train", data_bin, "--user-dir", USER_DIR, "--task", "distillation", "--teacher-path", teacher,
              "--criterion", "ptp", "--save-dir", tmp_path / "ptp", "--max-update", 6, *STUDENT, *TRAIN_FLAGS).stdout
    mix = [valid_metric(log, f"ptp_label{k}")[-1] for k in range(4)]
    assert math.isclose(sum(mix), 100.0, abs_tol=0.5), mix
    assert valid_metric(log, "ptp_accuracy")
    ptp = torch.load(tmp_path / "ptp" / "checkpoint_best.pt", weights_only=True)
    assert ptp["criterion"]["head.weight"].shape == (4, 16)  # TINY's decoder: half of 32
    # KD from the PTP student; pkd has its own criterion parameters (the narrow decoder's projection)
    kd = kd_train(data_bin, tmp_path / "kd", "--teacher-path", teacher, "--criterion", "pkd",
                  "--finetune-from-model", tmp_path / "ptp" / "checkpoint_best.pt", "--lr", "1e-6", updates=1).stdout
    assert "starting from fresh criterion parameters" in kd
    after = torch.load(tmp_path / "kd" / "checkpoint_last.pt", weights_only=True)
    assert "head.weight" not in after["criterion"] and "projections.decoder.weight" in after["criterion"]
    key = "encoder.layers.0.fc1.weight"
    assert torch.allclose(after["model"][key], ptp["model"][key], atol=1e-4)


def test_ptp_needs_a_teacher(data_bin, tmp_path):
    proc = run("fairseq-train", data_bin, "--user-dir", USER_DIR, "--criterion", "ptp", "--save-dir", tmp_path,
               "--max-update", 1, *STUDENT, *TRAIN_FLAGS, check=False)
    assert proc.returncode != 0 and "--teacher-path" in proc.stderr


def test_pipeline_pea_kd_commands_parse_with_fairseq_train(tmp_path, monkeypatch):
    """`fairseq-wd-pipeline --pea-kd`'s trainings, checked against fairseq-train's own parser (the
    real runs are measured in the README; the trainings themselves are tested above)."""
    pipe = Pipeline(get_parser().parse_args(["--work-dir", str(tmp_path), "--methods", "pea-kd"]))
    commands = []

    def sh(*cmd, log=None, env=None):
        commands.append([str(c) for c in cmd])

    monkeypatch.setattr(pipe, "sh", sh)
    models = pipe.students("teacher.pt", "kd-bin")
    assert list(models) == ["TINY SPS (orig, CE+KL)", "TINY PTP then logit-KD (orig, CE+KL)",
                            "TINY Pea-KD (orig, SPS+PTP then CE+KL+hidden)"]
    assert {c[0] for c in commands} == {"fairseq-train"}
    parsed = [options.parse_args_and_arch(options.get_training_parser(), c[1:]) for c in commands]
    n = RECIPES["demo"].student_updates
    assert [(a.arch, a.criterion, a.max_update) for a in parsed] == [
        ("sps_transformer_tiny", "logit_kd", n), ("wd_transformer_tiny", "ptp", n // 2),
        ("wd_transformer_tiny", "logit_kd", n - n // 2), ("sps_transformer_tiny", "ptp", n // 2),
        ("sps_transformer_tiny", "pkd", n - n // 2)]
    assert parsed[2].finetune_from_model == str(tmp_path / "tiny_ptp_logit_kd_ptp_seed1" / "checkpoint_best.pt")
    assert parsed[4].finetune_from_model == str(tmp_path / "tiny_pea_kd_ptp_seed1" / "checkpoint_best.pt")
    assert all(a.teacher_path == "teacher.pt" for a in parsed)


def test_weight_distillation_refuses_an_sps_student(data_bin, teacher, tmp_path):
    proc = kd_train(data_bin, tmp_path, "--task", "weight_distillation", "--teacher-path", teacher,
                    "--arch", "sps_transformer_tiny", "--criterion", "weight_distillation", check=False)
    assert proc.returncode != 0 and "use a wd_transformer_* arch" in proc.stderr
    assert not os.path.exists(tmp_path / "checkpoint_last.pt")
