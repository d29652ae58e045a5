"""`--criterion ptp`: Pea-KD's pre-training with the teacher's predictions, at token level.

Pea-KD labels each training sentence by whether the teacher got it right and how confident it was,
and pre-trains the student on those labels before KD. Translation has no sentence label, so this is
our adaptation (docs/methods.md#deviations-paper-released-code-this-code): under teacher forcing, each target
position gets
    0: teacher top-1 == reference token, top-1 probability > --ptp-correct-threshold
    1: top-1 right, not confident          2: top-1 wrong, probability > --ptp-wrong-threshold
    3: top-1 wrong, not confident
and the student's decoder states are classified into them by a 4-way linear head that lives in the
criterion. Start KD from the result with `fairseq-train --finetune-from-model PTP/checkpoint_best.pt`:
only the model is loaded, so the head is dropped (see own_state.py)."""
import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from fairseq import utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics

from .logit_kd import task_has_teacher
from .own_state import LoadsOnlyOwnState

N_LABELS = 4


@dataclass
class PTPConfig(FairseqDataclass):
    ptp_correct_threshold: float = field(default=0.9, metadata={
        "help": "t1: a right top-1 prediction is 'confident' (label 0, else 1) above this probability "
                "(Pea-KD's MRPC setting 0.95; in (0, 1))"})
    ptp_wrong_threshold: float = field(default=0.5, metadata={
        "help": "t2: a wrong top-1 prediction is 'confident' (label 2, else 3) above this probability "
                "(Pea-KD's MRPC setting 0.75; in (0, 1))"})


def ptp_labels(teacher_logits, target, correct_threshold, wrong_threshold):
    """B x T labels in 0..3 from the teacher's scores (logits or log-probabilities) of each target position."""
    confidence, top1 = utils.softmax(teacher_logits.float(), dim=-1).max(dim=-1)
    right = top1.eq(target)
    threshold = torch.where(right, torch.full_like(confidence, correct_threshold),
                            torch.full_like(confidence, wrong_threshold))
    return 2 * (~right).long() + confidence.le(threshold).long()


@register_criterion("ptp", dataclass=PTPConfig)
class PTPCriterion(LoadsOnlyOwnState, FairseqCriterion):
    def __init__(self, task, ptp_correct_threshold, ptp_wrong_threshold):
        super().__init__(task)
        for name, t in (("correct", ptp_correct_threshold), ("wrong", ptp_wrong_threshold)):
            if not 0.0 < t < 1.0:
                raise ValueError(f"--ptp-{name}-threshold must be in (0, 1), got {t}")
        if getattr(task, "student_args", None) is None or not task_has_teacher(task):
            raise ValueError("--criterion ptp labels tokens with the teacher's predictions: use "
                             "--task distillation --teacher-path TEACHER.pt")
        self.thresholds = (ptp_correct_threshold, ptp_wrong_threshold)
        self.head = nn.Linear(task.student_args.decoder_output_dim, N_LABELS)

    def forward(self, model, sample, reduce=True):
        target = sample["target"]
        mask = target.ne(self.padding_idx)
        features, _ = model(**sample["net_input"], features_only=True)
        teacher_logits = self.task.teacher_output(model, sample["net_input"])[0]
        labels = ptp_labels(teacher_logits, target, *self.thresholds).masked_fill(~mask, -100)
        logits = self.head(features).float()
        loss = F.cross_entropy(logits.view(-1, N_LABELS), labels.view(-1), ignore_index=-100, reduction="sum")
        ntokens = sample["ntokens"]
        logging_output = {
            "loss": loss.data, "ntokens": ntokens, "nsentences": target.size(0), "sample_size": ntokens,
            "ptp_correct": logits.argmax(-1).eq(labels).sum().data,  # tensors: no device sync per step
        }
        for k in range(N_LABELS):
            logging_output[f"ptp_label{k}"] = labels.eq(k).sum().data
        return loss, ntokens, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        total = lambda key: sum(log.get(key, 0) for log in logging_outputs)  # noqa: E731
        ntokens = max(total("ntokens"), 1)
        metrics.log_scalar("loss", total("loss") / ntokens / math.log(2), ntokens, round=3)
        metrics.log_scalar("ptp_accuracy", 100.0 * total("ptp_correct") / ntokens, ntokens, round=1)
        for k in range(N_LABELS):  # the label mix, to choose the thresholds
            metrics.log_scalar(f"ptp_label{k}", 100.0 * total(f"ptp_label{k}") / ntokens, ntokens, round=1)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
