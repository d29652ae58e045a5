"""Weight grouping plans and the parameter generator, against shapes and hand computations."""
import pytest
import torch

import fairseq_wd  # noqa: F401
from fairseq_wd.models.weight_distillation import WeightDistillationModel
from fairseq_wd.modules.parameter_generator import ParameterGenerator
from fairseq_wd.modules.weight_plan import PlanError, build_plan

from utils import model


def shapes(m):
    return {k: tuple(p.shape) for k, p in m.named_parameters()}


def entries(plan):
    return {e.student_key: e for e in plan}


def test_plan_base_to_tiny():
    plan = entries(build_plan(shapes(model("wd_transformer_tiny")), shapes(model("wd_transformer_base"))))
    fc1 = plan["decoder.layers.0.fc1.weight"]
    assert fc1.teacher_keys == [f"decoder.layers.{i}.fc1.weight" for i in range(6)]
    assert (fc1.shape, fc1.teacher_shape, fc1.transform) == ((1024, 256), (2048, 512), "matrix")
    kv = plan["decoder.layers.0.encoder_attn.k_proj.weight"]
    assert kv.shape == (256, 512) and kv.transform == "matrix"  # input keeps the encoder width
    enc = plan["encoder.layers.3.self_attn.q_proj.weight"]
    assert enc.teacher_keys == ["encoder.layers.3.self_attn.q_proj.weight"] and enc.transform == "elementwise"
    assert plan["decoder.embed_tokens.weight"].transform == "embedding"
    assert plan["decoder.output_projection.weight"].transform == "projection"
    assert plan["decoder.layers.0.self_attn_layer_norm.weight"].transform == "vector"


def test_plan_base_to_small_groups_of_three():
    plan = entries(build_plan(shapes(model("wd_transformer_small")), shapes(model("wd_transformer_base"))))
    assert [k.split(".")[2] for k in plan["decoder.layers.1.fc2.weight"].teacher_keys] == ["3", "4", "5"]
    assert plan["decoder.layers.1.fc2.weight"].transform == "matrix"
    assert plan["decoder.output_projection.weight"].transform == "copy"  # same width: frozen teacher, as released


def test_plan_deep_to_tiny_keeps_the_48_layer_encoder():
    """The paper's deep TINY (at an eighth of its width, to generate in a second): the teacher's pre-norm
    encoder layer for layer, the final LayerNorms a trainable copy of the teacher's at the same width (the
    released code), generated where narrower."""
    narrow = ["--encoder-embed-dim", "64", "--encoder-ffn-embed-dim", "256"]
    student = model("wd_transformer_deep_tiny", *narrow, device="cpu")
    teacher = model("wd_transformer_deep", *narrow, device="cpu")
    plan = entries(build_plan(shapes(student), shapes(teacher)))
    e47 = plan["encoder.layers.47.fc1.weight"]
    assert e47.teacher_keys == ["encoder.layers.47.fc1.weight"] and e47.transform == "elementwise"
    assert plan["encoder.layer_norm.weight"].transform == "trainable"
    assert plan["decoder.layer_norm.weight"].transform == "vector"  # 32 wide against the teacher's 64
    generator = ParameterGenerator(list(plan.values()), teacher.state_dict())
    generated = generator()
    assert torch.equal(generated["encoder.layer_norm.bias"], teacher.state_dict()["encoder.layer_norm.bias"])
    assert generated["encoder.layer_norm.weight"].requires_grad
    assert generated["decoder.layer_norm.weight"].shape == (32,)


def test_plan_deep_to_six_layer_encoder_groups_by_eight():
    """This project's extension, not the paper's method: a 48-layer encoder grouped into 6 layers."""
    plan = entries(build_plan(shapes(model("wd_transformer_tiny", "--encoder-normalize-before",
                                           "--decoder-normalize-before")), shapes(model("wd_transformer_deep"))))
    e5 = plan["encoder.layers.5.fc1.weight"]
    assert [k.split(".")[2] for k in e5.teacher_keys] == [str(i) for i in range(40, 48)]
    assert e5.transform == "matrix" and e5.shape == e5.teacher_shape == (2048, 512)


def test_plan_big_to_tiny():
    plan = entries(build_plan(shapes(model("wd_transformer_big_tiny")), shapes(model("wd_transformer_big"))))
    assert plan["decoder.layers.0.fc1.weight"].shape == (2048, 512)
    assert plan["decoder.layers.0.fc1.weight"].teacher_shape == (4096, 1024)
    assert plan["encoder.layers.0.fc1.weight"].transform == "elementwise"


def test_plan_layernorm_embedding_of_a_narrower_decoder_is_a_vector():
    """--layernorm-embedding: a 1-D tensor whose name contains 'embed' (it used to take the 2-D path)."""
    student = model("wd_transformer_tiny", "--layernorm-embedding", device="cpu")
    teacher = model("wd_transformer_base", "--layernorm-embedding", device="cpu")
    plan = entries(build_plan(shapes(student), shapes(teacher)))
    assert plan["decoder.layernorm_embedding.weight"].transform == "vector"
    assert plan["encoder.layernorm_embedding.bias"].transform == "elementwise"
    generated = ParameterGenerator(list(plan.values()), teacher.state_dict())()
    assert generated["decoder.layernorm_embedding.weight"].shape == (256,)


def test_plan_rejects_depths_that_do_not_divide():
    with pytest.raises(PlanError, match="multiple of the student"):
        build_plan(shapes(model("wd_transformer_small", "--decoder-layers", "4")), shapes(model("wd_transformer_base")))


def test_generator_equals_hand_computation():
    torch.manual_seed(0)
    teacher = {f"decoder.layers.{i}.fc1.weight": torch.randn(6, 4) for i in range(3)}
    teacher.update({f"decoder.layers.{i}.fc1.bias": torch.randn(6) for i in range(3)})
    teacher["decoder.embed_tokens.weight"] = torch.randn(10, 4)
    student = {"decoder.layers.0.fc1.weight": (3, 2), "decoder.layers.0.fc1.bias": (3,),
               "decoder.embed_tokens.weight": (10, 2)}
    plan = build_plan(student, {k: tuple(v.shape) for k, v in teacher.items()})
    gen = ParameterGenerator(plan, teacher)
    with torch.no_grad():
        for p in gen.parameters():
            p.uniform_(-1, 1)
    out = gen()
    t = gen.transforms["decoder__layers__fc1__weight"]
    a = t.w_layer @ t.w_mix
    w_o, w_i = t.w_out, t.w_in
    expected = torch.zeros(3, 2)
    for o in range(3):
        for i in range(2):
            expected[o, i] = sum(a[l] * w_o[p, o] * teacher[f"decoder.layers.{l}.fc1.weight"][p, q] * w_i[q, i]
                                 for l in range(3) for p in range(6) for q in range(4))
    key = "decoder__layers__0__fc1__weight"
    expected = gen.gates_w[key] * torch.tanh(expected) + gen.gates_b[key]
    assert torch.allclose(out["decoder.layers.0.fc1.weight"], expected, atol=1e-5)
    tb = gen.transforms["decoder__layers__fc1__bias"]
    ab = tb.w_layer @ tb.w_mix
    vec = sum(ab[l] * tb.w_out.t() @ teacher[f"decoder.layers.{l}.fc1.bias"] for l in range(3))
    key = "decoder__layers__0__fc1__bias"
    assert torch.allclose(out["decoder.layers.0.fc1.bias"], gen.gates_w[key] * torch.tanh(vec) + gen.gates_b[key], atol=1e-5)
    te = gen.transforms["decoder__embed_tokens__weight"]
    key = "decoder__embed_tokens__weight"
    emb = gen.gates_w[key] * torch.tanh(teacher["decoder.embed_tokens.weight"] @ te.w_in) + gen.gates_b[key]
    assert torch.allclose(out["decoder.embed_tokens.weight"], emb, atol=1e-5)


def test_truncated_identity_starts_at_tanh_of_cut_off_teacher():
    teacher = {f"decoder.layers.{i}.fc1.weight": torch.randn(6, 4) for i in range(2)}
    plan = build_plan({"decoder.layers.0.fc1.weight": (3, 2)}, {k: tuple(v.shape) for k, v in teacher.items()})
    out = ParameterGenerator(plan, teacher, init="truncated-identity")()
    assert torch.allclose(out["decoder.layers.0.fc1.weight"], torch.tanh(teacher["decoder.layers.0.fc1.weight"][:3, :2]))


def test_sharing_transforms_across_groups():
    teacher = {f"decoder.layers.{i}.fc1.weight": torch.randn(6, 4) for i in range(4)}
    t_shapes = {k: tuple(v.shape) for k, v in teacher.items()}
    s_shapes = {f"decoder.layers.{i}.fc1.weight": (3, 2) for i in range(2)}
    assert len(ParameterGenerator(build_plan(s_shapes, t_shapes), teacher, share_transforms=True).transforms) == 1
    assert len(ParameterGenerator(build_plan(s_shapes, t_shapes), teacher, share_transforms=False).transforms) == 2


def test_gradients_reach_generator_only():
    dims = ["--encoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32", "--encoder-layers", "2",
            "--decoder-layers", "2", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2"]
    teacher = model("wd_transformer_base", *dims, device="cpu")
    student = model("wd_transformer_tiny", *dims[:6], "--decoder-layers", "1", "--encoder-attention-heads", "2",
                    "--decoder-attention-heads", "2", device="cpu")
    wd = WeightDistillationModel(student, teacher.state_dict())
    src = torch.randint(4, 100, (3, 5))
    prev = torch.randint(4, 120, (3, 4))
    out, _ = wd(src, torch.full((3,), 5), prev)
    out.float().pow(2).mean().backward()
    assert all(p.grad is None for p in student.parameters())
    grads = [p.grad for p in wd.generator.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    assert not any(k.startswith("generator.teacher__") for k in wd.state_dict()), "teacher weights are not saved"
    wd.eval()
    with torch.no_grad():
        phase1 = wd(src, torch.full((3,), 5), prev)[0]
        wd.materialize_()
        direct = student(src, torch.full((3,), 5), prev)[0]
    assert (phase1 - direct).abs().max() < 1e-5
