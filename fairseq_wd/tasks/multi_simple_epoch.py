"""`--task distillation_multi_simple_epoch` and `--task weight_distillation_multi_simple_epoch`: fairseq's
`translation_multi_simple_epoch` (NLLB-200, M2M-100, IndicTrans2 teachers: every option of it, --lang-pairs,
--encoder-langtok, --decoder-langtok, --lang-dict, temperature sampling) with the teacher of
`distillation` and the WD phase 1 of `weight_distillation`: the same mixins, the same criterions.

The teacher runs on the student's batch, whose `src_tokens` already start with the encoder language
token and whose `prev_output_tokens` carry the decoder language token, so both see one input.

`--extra-train-data KD-BIN` (original + teacher output, as the bilingual WD recipe): a data-bin with
the main one's layout (train.SRC-TGT.* for every pair, the same dict.*.txt), as fairseq-wd-distill-data
writes it. It becomes a second data category of fairseq's own data manager (its `--extra-data`
mechanism, with the main data's language tokens), so each pair's teacher output is sampled beside the
pair's original data under the same --sampling-method.
"""
import copy
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

from fairseq import utils
from fairseq.data import Dictionary, indexed_dataset
from fairseq.dataclass import FairseqDataclass
from fairseq.dataclass.utils import gen_parser_from_dataclass
from fairseq.tasks import register_task
from fairseq.tasks.translation_multi_simple_epoch import TranslationMultiSimpleEpochTask

from .. import languages
from .teacher_aware import TeacherAware, TeacherConfig
from .weight_distillation import GeneratorConfig, WeightDistilling

logger = logging.getLogger(__name__)
EXTRA = "teacher_output"  # --extra-train-data's data category in fairseq's data manager


@dataclass
class ExtraTrainDataConfig(FairseqDataclass):
    extra_train_data: Optional[str] = field(
        default=None,
        metadata={"help": "a second data-bin of the same layout and dictionaries (train.SRC-TGT.* for every "
                          "--lang-pairs pair, e.g. fairseq-wd-distill-data's teacher output) trained on beside the "
                          "original: each of its pairs is one more dataset for --sampling-method"},
    )


def check_extra_train_data(args):
    """The --extra-train-data folder has every pair's train split and the main data's dictionaries."""
    folder, main = args.extra_train_data, utils.split_paths(args.data)[0]
    for lang in sorted({lang for p in languages.pairs(args) for lang in p}):
        mine, theirs = os.path.join(main, f"dict.{lang}.txt"), os.path.join(folder, f"dict.{lang}.txt")
        if not os.path.isfile(theirs) or (os.path.isfile(mine) and
                                          Dictionary.load(mine).symbols != Dictionary.load(theirs).symbols):
            raise ValueError(f"--extra-train-data {folder}: {theirs} is missing or differs from {mine}; binarize it "
                             "with the main data's dictionary (fairseq-preprocess --srcdict/--tgtdict), as "
                             "fairseq-wd-distill-data does")
    for src, tgt in languages.pairs(args):
        stems = [os.path.join(folder, f"{args.train_subset}.{a}-{b}.{src}") for a, b in ((src, tgt), (tgt, src))]
        if not any(indexed_dataset.dataset_exists(s, impl=args.dataset_impl) for s in stems):
            raise ValueError(f"--extra-train-data {folder} has no {args.train_subset} data for {src}-{tgt} "
                             f"({stems[0]}.idx): write it with fairseq-wd-distill-data over every pair of --lang-pairs")


def with_teacher_output(args):
    """A copy of `args` for the data manager with --extra-train-data as fairseq's --extra-data category
    EXTRA, on the same pairs and language tokens as the main data; the task's own args (saved in
    checkpoints) keep the user's options."""
    if EXTRA in (args.extra_data or {}):
        raise ValueError(f"--extra-data already has a {EXTRA!r} category: rename it, or drop --extra-train-data")
    check_extra_train_data(args)
    out = copy.copy(args)
    out.extra_data = dict(args.extra_data or {}, **{EXTRA: args.extra_train_data})
    out.extra_lang_pairs = dict(args.extra_lang_pairs or {}, **{EXTRA: ",".join(f"{s}-{t}" for s, t in
                                                                          languages.pairs(args))})
    out.langtoks = dict(args.langtoks, **{EXTRA: args.langtoks["main"]})
    return out


@register_task("distillation_multi_simple_epoch")
class DistillationMultiSimpleEpochTask(TeacherAware, TranslationMultiSimpleEpochTask):
    task_name = "distillation_multi_simple_epoch"

    @staticmethod
    def add_args(parser):
        TranslationMultiSimpleEpochTask.add_args(parser)
        gen_parser_from_dataclass(parser, TeacherConfig())
        gen_parser_from_dataclass(parser, ExtraTrainDataConfig())

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        """With --extra-train-data, the data manager reads the train split with it (checked at the first
        read, before training; loading a checkpoint, e.g. to export it, does not need the folder)."""
        extra = getattr(self.args, "extra_train_data", None)
        if extra and self.training and split == self.args.train_subset and self.data_manager.args is self.args:
            self.data_manager.args = with_teacher_output(self.args)
            logger.info("--extra-train-data %s: one more dataset per pair (%s:SRC-TGT)", extra, EXTRA)
        super().load_dataset(split, epoch, combine, **kwargs)


@register_task("weight_distillation_multi_simple_epoch")
class WeightDistillationMultiSimpleEpochTask(WeightDistilling, DistillationMultiSimpleEpochTask):
    task_name = "weight_distillation_multi_simple_epoch"

    @staticmethod
    def add_args(parser):
        DistillationMultiSimpleEpochTask.add_args(parser)
        gen_parser_from_dataclass(parser, GeneratorConfig())
