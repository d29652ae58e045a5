"""The logit_kd and pkd criteria on a real (toy-trained) teacher and real batches, against the
documented formulas computed independently from fairseq's own outputs."""
import pytest
import torch
import torch.nn.functional as F

from utils import TINY_DIMS, USER_DIR

import fairseq_wd  # noqa: F401
from fairseq import options, tasks
from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss
from fairseq_wd.criterions.logit_kd import LogitKDCriterion
from fairseq_wd.criterions.pkd import PKDCriterion

SMOOTHING = 0.1


def student_and_batch(data_bin, teacher, *arch):
    """A distillation task over `teacher`, a student of `arch` built by it (eval: no dropout) and 8
    validation sentences."""
    args = options.parse_args_and_arch(options.get_training_parser(),
                                       [str(data_bin), "--user-dir", USER_DIR, "--task", "distillation",
                                        "--teacher-path", str(teacher), *arch])
    task = tasks.setup_task(args)
    task.load_dataset("valid")
    torch.manual_seed(0)
    student = task.build_model(args).eval()
    ds = task.dataset("valid")
    return task, student, ds.collater([ds[i] for i in range(8)])


def hidden_states(model, sample):
    """fairseq's per-layer outputs (index 0 = embeddings, i = layer i), T x B x C."""
    net = sample["net_input"]
    enc = model.encoder(net["src_tokens"], net["src_lengths"], return_all_hiddens=True)
    out = model.decoder(net["prev_output_tokens"], encoder_out=enc, return_all_hiddens=True)
    return enc["encoder_states"], out[1]["inner_states"], out[0]


def expected_logit_kd(student_logits, teacher_logits, target, pad, alpha, t, topk=0):
    """(1 - alpha) * fairseq's label-smoothed CE + alpha * T^2 * KL(p_teacher^T || p_student^T), summed."""
    lprobs = F.log_softmax(student_logits.float(), dim=-1)
    ce, _ = label_smoothed_nll_loss(lprobs.view(-1, lprobs.size(-1)), target.view(-1), SMOOTHING, ignore_index=pad)
    log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
    teacher_logits = teacher_logits.float()
    if topk:
        teacher_logits, idx = teacher_logits.topk(topk, dim=-1)
        log_p_s = log_p_s.gather(-1, idx)
    kl = F.kl_div(log_p_s, F.log_softmax(teacher_logits / t, dim=-1), log_target=True, reduction="none").sum(-1)
    kd = t * t * kl[target.ne(pad)].sum()
    return (1 - alpha) * ce + alpha * kd, kd


@pytest.mark.parametrize("topk", [0, 5])
def test_logit_kd_mixes_smoothed_ce_and_tempered_kl(data_bin, teacher, topk):
    task, student, sample = student_and_batch(data_bin, teacher, "--arch", "wd_transformer_base", *TINY_DIMS,
                                              "--decoder-layers", "1")
    alpha, t = 0.3, 2.0
    loss, _, log = LogitKDCriterion(task, False, SMOOTHING, alpha, t, topk)(student, sample)
    with torch.no_grad():
        teacher_logits = task.get_teacher()(**sample["net_input"])[0]
        expected, kd = expected_logit_kd(student(**sample["net_input"])[0], teacher_logits, sample["target"],
                                         task.target_dictionary.pad(), alpha, t, topk)
    assert kd > 1.0, "a random student is far from the trained teacher: the KD term must weigh in"
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert log["kd_loss"].item() == pytest.approx(kd.item(), rel=1e-5)
    teacher_nll = F.cross_entropy(teacher_logits.transpose(1, 2), sample["target"], reduction="sum",
                                  ignore_index=task.target_dictionary.pad())
    assert log["teacher_nll_loss"].item() == pytest.approx(teacher_nll.item(), rel=1e-5)


def test_pkd_of_a_student_identical_to_its_teacher_is_zero(data_bin, teacher):
    task, student, sample = student_and_batch(data_bin, teacher, "--arch", "wd_transformer_base", *TINY_DIMS)
    student.load_state_dict(task.teacher.weights)  # the teacher checkpoint as the student
    loss, _, log = PKDCriterion(task, False, SMOOTHING, 0.5, 2.0, 0, 1.0, "skip", "skip")(student, sample)
    assert log["pkd_loss"] == pytest.approx(0.0, abs=1e-5) and log["kd_loss"] == pytest.approx(0.0, abs=1e-5)
    with torch.no_grad():
        expected, _ = expected_logit_kd(student(**sample["net_input"])[0], task.get_teacher()(**sample["net_input"])[0],
                                        sample["target"], task.target_dictionary.pad(), 0.5, 2.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5), "what is left is (1 - alpha) * CE"


def test_pkd_hidden_loss_of_a_known_layer_map(data_bin, teacher):
    """Student encoder layers 1, 2 <- teacher layers 2, 1; the student's single, narrower decoder layer
    <- teacher layer 1 through the criterion's projection. L2-normalised squared distances, the encoder
    term averaged over source tokens, the decoder term over target tokens (per target token as logged)."""
    task, student, sample = student_and_batch(
        data_bin, teacher, "--arch", "wd_transformer_base", *TINY_DIMS, "--decoder-layers", "1",
        "--decoder-embed-dim", "16", "--decoder-ffn-embed-dim", "32")
    alpha, t, beta = 0.3, 2.0, 0.7
    pkd = PKDCriterion(task, False, SMOOTHING, alpha, t, 0, beta, "2,1", "1")
    loss, _, log = pkd(student, sample)

    def distance(h_s, h_t, mask):  # summed over the tokens that mask keeps
        keep = mask.transpose(0, 1)
        return (h_s[keep] / h_s[keep].norm(dim=-1, keepdim=True)
                - h_t[keep] / h_t[keep].norm(dim=-1, keepdim=True)).pow(2).sum()

    pad = task.target_dictionary.pad()
    src_mask, tgt_mask = sample["net_input"]["src_tokens"].ne(pad), sample["target"].ne(pad)
    with torch.no_grad():
        s_enc, s_dec, s_logits = hidden_states(student, sample)
        t_enc, t_dec, t_logits = hidden_states(task.get_teacher(), sample)
        encoder = (distance(s_enc[1], t_enc[2], src_mask) + distance(s_enc[2], t_enc[1], src_mask)) / 2
        projected = s_dec[1] @ pkd.projections["decoder"].weight.T
        decoder = distance(projected, t_dec[1], tgt_mask)
        per_token = encoder / src_mask.sum() + decoder / tgt_mask.sum()
        logit_part, _ = expected_logit_kd(s_logits, t_logits, sample["target"], pad, alpha, t)
    assert per_token > 0.01
    assert (log["pkd_loss"] / sample["ntokens"]).item() == pytest.approx(per_token.item(), rel=1e-5)
    assert loss.item() == pytest.approx((logit_part + beta * per_token * sample["ntokens"]).item(), rel=1e-5)
