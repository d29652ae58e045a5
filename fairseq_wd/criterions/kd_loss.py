"""Word-level KD and Patient-KD losses as plain functions of tensors (fp32, padding masked, summed)."""
import torch.nn.functional as F


def teacher_topk(teacher_logits, k):
    """The teacher's top-k logits and their vocabulary indices (k = 0: the full vocabulary)."""
    if k <= 0 or k >= teacher_logits.size(-1):
        return teacher_logits, None
    return teacher_logits.topk(k, dim=-1)


def kd_loss(student_logits, teacher_scores, teacher_idx, mask, temperature):
    """T^2 * sum over unmasked positions of KL(p_teacher^T || p_student^T).

    teacher_scores: logits or log-probabilities (either gives the same tempered softmax once
    renormalised) over the full vocabulary (teacher_idx None) or over the K entries in teacher_idx,
    in which case the teacher distribution is renormalised over those K."""
    t = temperature
    log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
    if teacher_idx is not None:
        log_p_s = log_p_s.gather(-1, teacher_idx)
    log_p_t = F.log_softmax(teacher_scores.float() / t, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)
    return kl.masked_fill(~mask, 0.0).sum() * t * t


def patient_loss(student_states, teacher_states, mask):
    """Patient-KD on token states: squared distance of L2-normalised vectors, summed over the hidden
    dimension and unmasked tokens, averaged over the mapped layer pairs.

    states: lists (one entry per mapped pair) of T x B x C tensors; mask: B x T, True = real token."""
    total = 0.0
    keep = mask.transpose(0, 1).unsqueeze(-1)
    for h_s, h_t in zip(student_states, teacher_states):
        diff = F.normalize(h_s.float(), dim=-1) - F.normalize(h_t.float(), dim=-1)
        total = total + (diff.pow(2) * keep).sum()
    return total / max(len(student_states), 1)
