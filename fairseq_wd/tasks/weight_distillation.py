"""`--task weight_distillation`: WD phase 1 under fairseq-train.

`--arch` names the student (e.g. wd_transformer_tiny); `--teacher-path` the teacher whose weights
the generator transforms. Everything of `distillation` applies (`--extra-train-data` for the released
recipe's original + teacher-output data). The generator takes the teacher's weights; the teacher
*model* (for optional KD terms of the `weight_distillation` criterion) is built from the same read of
the checkpoint, only when the criterion asks for it. The phase-1 part is `WeightDistilling`, which the
multilingual `weight_distillation_multi_simple_epoch` shares.
"""
from dataclasses import dataclass, field

import torch

from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import register_task

from ..checkpoints import CheckpointError
from ..models.sps_transformer import sps_reused_layers
from ..models.weight_distillation import WeightDistillationModel
from .distillation import DistillationConfig, DistillationTask

PHASE1_TASKS = ("weight_distillation", "weight_distillation_multi_simple_epoch")  # what fairseq-wd-export reads


@dataclass
class GeneratorConfig(FairseqDataclass):
    wd_separate_transforms: bool = field(
        default=False, metadata={"help": "one set of W_I, W_O, W_L per group, as the released code; by default "
                                         "all groups of a weight class share one set, as the paper describes"})
    wd_init: ChoiceEnum(["paper", "truncated-identity"]) = field(
        default="paper", metadata={"help": "paper: xavier projections as the released code; truncated-identity: "
                                           "identity projections cut to the student's width (a cut-off teacher copy)"})


@dataclass
class WeightDistillationConfig(GeneratorConfig, DistillationConfig):
    pass


class WeightDistilling:
    """WD phase 1 on a TeacherAware task (listed before it): the student it builds is generated from the
    teacher's weights; beam search (validation BLEU, fairseq-generate) runs it materialized. Tied
    embeddings (--share-all-embeddings, --share-decoder-input-output-embed) are one parameter of the
    student, so they are generated once and stay tied when written."""

    def build_model(self, cfg, from_checkpoint=False):
        options = self.teacher_options
        if not options.teacher_path:
            name = getattr(self, "task_name", "weight_distillation")
            raise CheckpointError(f"--task {name} needs --teacher-path TEACHER.pt")
        if sps_reused_layers(cfg):
            raise ValueError(f"--arch {cfg.arch}: Weight Distillation generates a plain student, and its export "
                             "would drop the shared second pass; use a wd_transformer_* arch (or --sps-reuse none)")
        # The student, built as usual (BLEU validation's generator runs it once materialized).
        student = super().build_model(cfg, from_checkpoint)
        return WeightDistillationModel(student, self.teacher.weights, not options.wd_separate_transforms,
                                       str(options.wd_init))

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        """Beam search over the generated student: every phase-1 model among `models` is materialized
        first, also when fairseq passes it inside its data-parallel wrappers (valid_step under DDP)."""
        for m in models:
            m = unwrapped(m)
            if isinstance(m, WeightDistillationModel):
                m.materialize_()
        return super().inference_step(generator, models, sample, prefix_tokens, constraints)


def unwrapped(model):
    """The model inside fairseq's wrappers (ModuleProxyWrapper, DistributedDataParallel, ...: `.module`)."""
    while not isinstance(model, WeightDistillationModel) and isinstance(getattr(model, "module", None),
                                                                         torch.nn.Module):
        model = model.module
    return model


@register_task("weight_distillation", dataclass=WeightDistillationConfig)
class WeightDistillationTask(WeightDistilling, DistillationTask):
    cfg: WeightDistillationConfig
    task_name = "weight_distillation"
