"""The KD and Patient-KD losses against hand computations on small tensors."""
import math

import pytest
import torch

from fairseq_wd.criterions.kd_loss import kd_loss, patient_loss, teacher_topk
from fairseq_wd.criterions.pkd import PKDCriterion, layer_map


def hand_kl(p_logits, q_logits, t):
    """KL(softmax(q/t) || softmax(p/t)) written out element by element."""
    def softmax(z):
        e = [math.exp(v / t) for v in z]
        return [v / sum(e) for v in e]
    p, q = softmax(p_logits), softmax(q_logits)
    return sum(qi * (math.log(qi) - math.log(pi)) for pi, qi in zip(p, q))


def test_kd_loss_full_vocabulary_with_temperature_and_padding():
    student = torch.tensor([[[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]]])
    teacher = torch.tensor([[[2.0, 1.0, 0.0], [9.0, -9.0, 9.0]]])
    mask = torch.tensor([[True, False]])  # second position is padding: must not count
    t = 2.0
    expected = t * t * hand_kl([1.0, 2.0, 0.5], [2.0, 1.0, 0.0], t)
    assert kd_loss(student, teacher, None, mask, t).item() == pytest.approx(expected, rel=1e-6)


def test_kd_loss_top_k_renormalises_the_teacher():
    student = torch.tensor([[[1.0, 2.0, 0.5, -1.0]]])
    teacher = torch.tensor([[[3.0, 0.0, 2.0, 1.0]]])
    values, idx = teacher_topk(teacher, 2)  # entries 0 and 2
    assert idx.tolist() == [[[0, 2]]]
    t = 1.5
    # teacher renormalised over {0, 2}; student log-probs over the full vocabulary, taken at {0, 2}
    q = [math.exp(3.0 / t), math.exp(2.0 / t)]
    q = [v / sum(q) for v in q]
    z = sum(math.exp(v / t) for v in [1.0, 2.0, 0.5, -1.0])
    log_p = [1.0 / t - math.log(z), 0.5 / t - math.log(z)]
    expected = t * t * sum(qi * (math.log(qi) - lp) for qi, lp in zip(q, log_p))
    got = kd_loss(student, values, idx, torch.tensor([[True]]), t).item()
    assert got == pytest.approx(expected, rel=1e-6)
    # teacher log-probs (offline storage) give the same loss as logits
    lprobs = torch.log_softmax(teacher, -1).topk(2)[0]
    assert kd_loss(student, lprobs, idx, torch.tensor([[True]]), t).item() == pytest.approx(expected, rel=1e-5)


def test_kd_loss_is_zero_when_student_equals_teacher():
    logits = torch.randn(2, 3, 7)
    assert kd_loss(logits, logits.clone(), None, torch.ones(2, 3, dtype=torch.bool), 3.0).item() == pytest.approx(0, abs=1e-6)


def test_patient_loss_normalises_masks_and_averages_layers():
    h_s = torch.tensor([[[3.0, 4.0]], [[1.0, 0.0]]])  # T=2, B=1, C=2
    h_t = torch.tensor([[[0.0, 2.0]], [[5.0, 5.0]]])
    mask = torch.tensor([[True, False]])
    # token 0: (0.6, 0.8) vs (0, 1) -> 0.36 + 0.04; token 1 masked
    assert patient_loss([h_s], [h_t], mask).item() == pytest.approx(0.40, rel=1e-6)
    assert patient_loss([h_s, h_s], [h_t, h_s], mask).item() == pytest.approx(0.20, rel=1e-6)


def test_pkd_layer_maps():
    assert layer_map("skip", 6, 12, "encoder") == [(1, 2), (2, 4), (3, 6), (4, 8), (5, 10), (6, 12)]
    assert layer_map("skip", 6, 48, "encoder")[-1] == (6, 48)
    assert layer_map("last", 2, 6, "decoder") == [(1, 5), (2, 6)]
    assert layer_map("skip", 1, 6, "decoder") == [(1, 6)]
    assert layer_map("3,6", 2, 6, "decoder") == [(1, 3), (2, 6)]
    assert layer_map("none", 2, 6, "decoder") == []
    with pytest.raises(ValueError, match="teacher layer"):
        layer_map("3,7", 2, 6, "decoder")
    with pytest.raises(ValueError, match="2 layers"):
        layer_map("1,2,3", 2, 6, "decoder")


def test_pkd_encoder_term_is_per_source_token():
    """fairseq divides the summed loss by target tokens; the encoder term must still be an average over
    source tokens, whatever the target length (the decoder term is per target token)."""
    pkd = PKDCriterion.__new__(PKDCriterion)
    torch.nn.Module.__init__(pkd)
    pkd.beta, pkd.padding_idx, pkd.projections = 1.0, 1, torch.nn.ModuleDict()
    pkd.maps = {"encoder": [(1, 1)], "decoder": []}
    h_s, h_t = torch.randn(4, 1, 8), torch.randn(4, 1, 8)
    src = torch.tensor([[1, 5, 6, 2]])  # one pad, three source tokens

    def per_target_token(n_target):
        sample = {"net_input": {"src_tokens": src}, "target": torch.full((1, n_target), 7), "ntokens": n_target}
        return pkd.extra_terms(sample, ([h_s], []), ([h_t], []), {}).item() / n_target

    expected = patient_loss([h_s], [h_t], src.ne(1)).item() / 3
    assert per_target_token(2) == pytest.approx(expected, rel=1e-5)
    assert per_target_token(9) == pytest.approx(expected, rel=1e-5)
