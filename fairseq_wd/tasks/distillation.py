"""`--task distillation`: translation that knows its teacher.

The teacher lives on the task, not in the student: read once (`task.teacher`, a `Teacher`) and checked
against the dictionaries when the student is built for training; its model is built in eval mode
without gradients when a criterion first needs it, and moved lazily to the student's device and dtype.
It is therefore never saved in student checkpoints, never wrapped by DDP, and never loaded at generate
time (`build_model(from_checkpoint=True)`).

What a criterion may use: `has_teacher()`, `teacher` (weights, config), `get_teacher()` (the model),
`teacher_output(...)`, and `student_args` (the student's model config, set when it is built).
"""
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from fairseq import utils
from fairseq.data import ConcatDataset, LanguagePairDataset
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask, load_langpair_dataset

from ..datasets.teacher_topk import TeacherTopKDataset, has_topk
from ..teacher import Teacher, teacher_forward

logger = logging.getLogger(__name__)


@dataclass
class DistillationConfig(TranslationConfig):
    teacher_path: Optional[str] = field(
        default=None,
        metadata={"help": "teacher checkpoint (a fairseq translation model on the same dictionaries); "
                          "needed by online logit_kd / pkd, not by sequence-level KD"},
    )
    extra_train_data: Optional[str] = field(
        default=None,
        metadata={"help": "a second binarized data-bin (same dictionaries, e.g. teacher output from "
                          "fairseq-wd-distill-data) whose train split is concatenated with the original"},
    )


@register_task("distillation", dataclass=DistillationConfig)
class DistillationTask(TranslationTask):
    cfg: DistillationConfig

    def __init__(self, cfg, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        self._teacher = None
        self.student_args = None

    def build_model(self, cfg, from_checkpoint=False):
        if not from_checkpoint and self.has_teacher():  # a wrong or mismatched teacher fails here, before training
            logger.info("teacher %s: matches the data's dictionaries", self.teacher.path)
        model = super().build_model(cfg, from_checkpoint)
        if not from_checkpoint:
            self.student_args = cfg
        return model

    def has_teacher(self):
        return bool(self.cfg.teacher_path)

    @property
    def teacher(self):
        """The --teacher-path checkpoint, read and checked against the data's dictionaries on first use."""
        if self._teacher is None:
            if not self.has_teacher():
                raise ValueError("this criterion needs a teacher: pass --teacher-path TEACHER.pt")
            teacher = Teacher(self.cfg.teacher_path)
            teacher.check_dictionaries(self.source_dictionary, self.target_dictionary)
            self._teacher = teacher
        return self._teacher

    def get_teacher(self):
        return self.teacher.model(self)

    def teacher_output(self, student, net_input, **kwargs):
        return teacher_forward(self.get_teacher(), student, net_input, **kwargs)

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        super().load_dataset(split, epoch, combine, **kwargs)
        if split != self.cfg.train_subset:
            return
        src, tgt = self.cfg.source_lang, self.cfg.target_lang
        paths = utils.split_paths(self.cfg.data)
        data_path = paths[(epoch - 1) % len(paths)]
        if self.cfg.extra_train_data:
            self.datasets[split] = self._concat(self.datasets[split], self._load_extra(split))
        elif has_topk(data_path, split, src, tgt):
            logger.info("offline KD: teacher top-K log-probabilities found for %s/%s", data_path, split)
            self.datasets[split] = TeacherTopKDataset(
                self.datasets[split], data_path, split, src, tgt, self.tgt_dict.pad()
            )

    def _load_extra(self, split):
        folder = self.cfg.extra_train_data
        for lang, d in ((self.cfg.source_lang, self.src_dict), (self.cfg.target_lang, self.tgt_dict)):
            other = self.load_dictionary(os.path.join(folder, f"dict.{lang}.txt"))
            if other.symbols != d.symbols:
                raise ValueError(
                    f"--extra-train-data {folder}: dict.{lang}.txt ({len(other)} entries) differs from "
                    f"the main data-bin's ({len(d)}); binarize it with --srcdict/--tgtdict of the main data."
                )
        return load_langpair_dataset(
            folder, split, self.cfg.source_lang, self.src_dict, self.cfg.target_lang, self.tgt_dict,
            combine=False, dataset_impl=self.cfg.dataset_impl, upsample_primary=1,
            left_pad_source=self.cfg.left_pad_source, left_pad_target=self.cfg.left_pad_target,
            max_source_positions=self.cfg.max_source_positions,
            max_target_positions=self.cfg.max_target_positions, truncate_source=self.cfg.truncate_source,
        )

    def _concat(self, a, b):
        """One LanguagePairDataset over the concatenated token datasets of `a` and `b`."""
        logger.info("train = %d original + %d extra pairs", len(a), len(b))
        return LanguagePairDataset(
            ConcatDataset([a.src, b.src]), np.concatenate([a.src_sizes, b.src_sizes]), self.src_dict,
            ConcatDataset([a.tgt, b.tgt]), np.concatenate([a.tgt_sizes, b.tgt_sizes]), self.tgt_dict,
            left_pad_source=self.cfg.left_pad_source, left_pad_target=self.cfg.left_pad_target,
            shuffle=True, pad_to_multiple=self.cfg.required_seq_len_multiple,
        )
