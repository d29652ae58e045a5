"""`--criterion logit_kd`: (1 - alpha) * label-smoothed CE + alpha * T^2 * KL(p_teacher^T || p_student^T).

The teacher's scores come from the batch when the data holds stored top-K log-probabilities
(offline KD), else from the task's teacher (online). With alpha = 0 the teacher is not run and the
loss is exactly label_smoothed_cross_entropy."""
import math
from dataclasses import dataclass, field

from fairseq import utils
from fairseq.criterions import register_criterion
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
)
from fairseq.logging import metrics

from .kd_loss import kd_loss, teacher_topk


@dataclass
class LogitKDConfig(LabelSmoothedCrossEntropyCriterionConfig):
    kd_alpha: float = field(default=0.5, metadata={"help": "weight of the KD term, in [0, 1]; 0 = plain label-smoothed CE"})
    kd_temperature: float = field(default=1.0, metadata={"help": "softmax temperature T > 0 of teacher and student (the KD term is scaled by T^2)"})
    kd_topk: int = field(default=0, metadata={"help": "0 = KL over the full vocabulary; K > 0 = over the teacher's top-K, renormalised"})


def check_kd_options(alpha, temperature, topk):
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"--kd-alpha must be in [0, 1], got {alpha}")
    if temperature <= 0:
        raise ValueError(f"--kd-temperature must be > 0, got {temperature}")
    if topk < 0:
        raise ValueError(f"--kd-topk must be >= 0 (0 = full vocabulary), got {topk}")


def task_has_teacher(task):
    """The task-criterion contract: a distillation task says whether it has a teacher."""
    return getattr(task, "has_teacher", lambda: False)()


@register_criterion("logit_kd", dataclass=LogitKDConfig)
class LogitKDCriterion(LabelSmoothedCrossEntropyCriterion):
    def __init__(self, task, sentence_avg, label_smoothing, kd_alpha, kd_temperature, kd_topk,
                 ignore_prefix_size=0, report_accuracy=False):
        super().__init__(task, sentence_avg, label_smoothing, ignore_prefix_size, report_accuracy)
        check_kd_options(kd_alpha, kd_temperature, kd_topk)
        self.alpha, self.temperature, self.topk = kd_alpha, kd_temperature, kd_topk

    def forward(self, model, sample, reduce=True):
        net_output, student_extra = self.student_forward(model, sample)
        loss, nll_loss = self.compute_loss(model, net_output, sample, reduce=reduce)
        logging_output = {
            "loss": loss.data, "nll_loss": nll_loss.data, "ntokens": sample["ntokens"],
            "nsentences": sample["target"].size(0),
            "sample_size": sample["target"].size(0) if self.sentence_avg else sample["ntokens"],
        }
        if (self.alpha > 0 or self.needs_teacher_always()) and self.has_teacher_signal(model, sample):
            extra_loss = self.distillation_terms(model, sample, net_output, student_extra, logging_output)
            loss = (1.0 - self.alpha) * loss + extra_loss
            logging_output["loss"] = loss.data
        if self.report_accuracy:
            n_correct, total = self.compute_accuracy(model, net_output, sample)
            logging_output["n_correct"], logging_output["total"] = utils.item(n_correct.data), utils.item(total.data)
        return loss, logging_output["sample_size"], logging_output

    def needs_teacher_always(self):
        return False

    def has_teacher_signal(self, model, sample):
        """Stored top-K in the batch, or a teacher on the task. Validation on a split without either
        (offline KD) reports plain label-smoothed CE; training without either is an error."""
        if "teacher_topk_idx" in sample or task_has_teacher(self.task):
            return True
        if model.training:
            raise ValueError(f"--criterion {self.__class__.__name__}: no teacher. Pass --task distillation (or "
                             "distillation_multi_simple_epoch) --teacher-path TEACHER.pt, or train on data with "
                             "stored top-K (fairseq-wd-distill-data --save-topk K)")
        return False

    def student_forward(self, model, sample):
        return model(**sample["net_input"]), None

    def teacher_forward(self, model, sample):
        return self.task.teacher_output(model, sample["net_input"]), None

    def distillation_terms(self, model, sample, net_output, student_extra, logging_output):
        """alpha * KD (+ whatever a subclass adds); logs kd_loss and the teacher's nll."""
        target = sample["target"]
        mask = target.ne(self.padding_idx)
        teacher_extra = None
        if "teacher_topk_idx" in sample:
            scores, idx = sample["teacher_topk_lprob"], sample["teacher_topk_idx"]
            if self.needs_teacher_always():  # stored top-K has the logits only: hidden states need the teacher
                _, teacher_extra = self.teacher_forward(model, sample)
        else:
            teacher_out, teacher_extra = self.teacher_forward(model, sample)
            t_lprobs = utils.log_softmax(teacher_out[0].float(), dim=-1)
            teacher_nll = -t_lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1).masked_fill(~mask, 0.0).sum()
            logging_output["teacher_nll_loss"] = teacher_nll.data
            scores, idx = teacher_topk(teacher_out[0], self.topk)
        kd = kd_loss(net_output[0], scores, idx, mask, self.temperature)
        logging_output["kd_loss"] = kd.data
        return self.alpha * kd + self.extra_terms(sample, student_extra, teacher_extra, logging_output)

    def extra_terms(self, sample, student_extra, teacher_extra, logging_output):
        return 0.0

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        ntokens = sum(log.get("ntokens", 0) for log in logging_outputs)
        for key in ("kd_loss", "teacher_nll_loss", "pkd_loss"):
            if any(key in log for log in logging_outputs):
                value = sum(log.get(key, 0) for log in logging_outputs)
                metrics.log_scalar(key, value / max(ntokens, 1) / math.log(2), ntokens, round=3)
