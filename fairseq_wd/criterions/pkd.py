"""`--criterion pkd`: logit_kd + beta * Patient-KD loss on token-level hidden states (Sun et al. 2019).

Adapted from PKD's [CLS] states to NMT: every non-pad token of the mapped encoder and decoder layers.
A student encoder with shuffled parameter sharing (sps_transformer) counts its second pass as layers.
Deviations from PKD, both needed for translation students:
- the top student layer is included by default (PKD leaves it to the logit term, which would leave
  TINY's 1-layer decoder with nothing);
- where the student is narrower than the teacher (TINY's decoder), a learned linear projection
  (student width -> teacher width, as in TinyBERT) is applied before normalisation.
"""
from dataclasses import dataclass, field

import torch.nn as nn
from fairseq.criterions import register_criterion

from ..models.sps_transformer import effective_encoder_layers
from ..modules.hidden_states import encoder_output_of, layer_states
from .kd_loss import patient_loss
from .logit_kd import LogitKDConfig, LogitKDCriterion, task_has_teacher
from .own_state import LoadsOnlyOwnState


@dataclass
class PKDConfig(LogitKDConfig):
    pkd_beta: float = field(default=0.5, metadata={"help": "weight of the Patient-KD term (per-token sum over "
                                                           "the hidden dimension; PKD's beta 500 on mean-MSE "
                                                           "at width 768 corresponds to about 0.65)"})
    pkd_encoder_map: str = field(default="skip", metadata={"help": "encoder layer mapping: skip (student layer i "
                                                                  "<- teacher layer i*Lt/Ls), last (top Ls teacher "
                                                                  "layers), none, or 1-based teacher layers per "
                                                                  "student layer, e.g. 2,4,6"})
    pkd_decoder_map: str = field(default="skip", metadata={"help": "decoder layer mapping, as --pkd-encoder-map"})


def layer_map(spec, n_student, n_teacher, stack):
    """[(student layer, teacher layer)], both 1-based, for one stack."""
    spec = str(spec).strip().lower()
    if spec == "none":
        return []
    if spec == "skip":  # rounded down; rounded up for a student deeper than its teacher (SPS)
        teacher = [(i * n_teacher) // n_student if n_student <= n_teacher else -(-i * n_teacher // n_student)
                   for i in range(1, n_student + 1)]
    elif spec == "last":
        if n_student > n_teacher:
            raise ValueError(f"the student {stack} ({n_student} layers) is deeper than the teacher's ({n_teacher}): "
                             f"use --pkd-{stack}-map skip")
        teacher = [n_teacher - n_student + i for i in range(1, n_student + 1)]
    else:
        try:
            teacher = [int(x) for x in spec.split(",")]
        except ValueError:
            raise ValueError(f"--pkd-{stack}-map {spec!r}: use skip, last, none or comma-separated layer numbers")
        if len(teacher) != n_student:
            raise ValueError(f"--pkd-{stack}-map {spec!r} names {len(teacher)} teacher layers; the student "
                             f"{stack} has {n_student} layers, one teacher layer each")
    bad = [t for t in teacher if not 1 <= t <= n_teacher]
    if bad:
        raise ValueError(f"--pkd-{stack}-map names teacher layer(s) {bad}, but the teacher {stack} has "
                         f"layers 1..{n_teacher}")
    return list(zip(range(1, n_student + 1), teacher))


@register_criterion("pkd", dataclass=PKDConfig)
class PKDCriterion(LoadsOnlyOwnState, LogitKDCriterion):
    def __init__(self, task, sentence_avg, label_smoothing, kd_alpha, kd_temperature, kd_topk,
                 pkd_beta, pkd_encoder_map, pkd_decoder_map, ignore_prefix_size=0, report_accuracy=False):
        super().__init__(task, sentence_avg, label_smoothing, kd_alpha, kd_temperature, kd_topk,
                         ignore_prefix_size, report_accuracy)
        self.beta = pkd_beta
        self.maps, self.projections = {}, nn.ModuleDict()
        if pkd_beta > 0:
            self.setup_maps(task, pkd_encoder_map, pkd_decoder_map)

    def setup_maps(self, task, pkd_encoder_map, pkd_decoder_map):
        if not task_has_teacher(task) or task.student_args is None:
            raise ValueError("the Patient-KD term needs --task distillation or weight_distillation (or their "
                             "_multi_simple_epoch versions) with --teacher-path")
        teacher, student = task.get_teacher(), task.student_args
        for stack, spec in (("encoder", pkd_encoder_map), ("decoder", pkd_decoder_map)):
            t_layers = len(getattr(teacher, stack).layers)
            t_width = getattr(teacher, stack).embed_tokens.embedding_dim
            s_layers = effective_encoder_layers(student) if stack == "encoder" else student.decoder_layers
            s_width = getattr(student, f"{stack}_embed_dim")
            self.maps[stack] = layer_map(spec, s_layers, t_layers, stack)
            if s_width != t_width:
                self.projections[stack] = nn.Linear(s_width, t_width, bias=False)

    def needs_teacher_always(self):
        return self.beta > 0

    def student_forward(self, model, sample):
        with encoder_output_of(model) as caught:
            net_output = model(**sample["net_input"], return_all_hiddens=True)
        return net_output, layer_states(net_output, caught["out"])

    def teacher_forward(self, model, sample):
        with encoder_output_of(self.task.get_teacher()) as caught:
            out = self.task.teacher_output(model, sample["net_input"], return_all_hiddens=True)
        return out, layer_states(out, caught["out"])

    def extra_terms(self, sample, student_extra, teacher_extra, logging_output):
        if self.beta <= 0:
            return 0.0
        masks = {"encoder": sample["net_input"]["src_tokens"].ne(self.padding_idx),
                 "decoder": sample["target"].ne(self.padding_idx)}
        total = 0.0
        for i, stack in enumerate(("encoder", "decoder")):
            pairs = self.maps[stack]
            if not pairs:
                continue
            project = self.projections[stack] if stack in self.projections else (lambda h: h)
            s = [project(student_extra[i][a - 1]) for a, _ in pairs]
            t = [teacher_extra[i][b - 1] for _, b in pairs]
            term = patient_loss(s, t, masks[stack])
            if stack == "encoder":  # fairseq divides the loss by target tokens: make this term per source token
                term = term * sample["ntokens"] / masks["encoder"].sum().clamp(min=1)
            total = total + term
        logging_output["pkd_loss"] = total.data if hasattr(total, "data") else total
        return self.beta * total
