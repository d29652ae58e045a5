"""`--task distillation`: translation that knows its teacher.

The teacher (`--teacher-path`, `--teacher-dict`; what a criterion may use of it) is `TeacherAware`'s
(teacher_aware.py), shared with the multilingual tasks. This task adds `--extra-train-data` (original +
teacher output), offline KD from stored top-K log-probabilities, and `--shortlist vmap.txt` decoding
(fairseq-generate over each batch's candidate targets; shortlist/vmap.py, shortlist/generator.py).
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
from ..shortlist.vmap import Shortlist
from ..shortlist.generator import ShortlistSequenceGenerator
from .teacher_aware import TeacherAware, TeacherConfig

logger = logging.getLogger(__name__)


@dataclass
class DistillationConfig(TeacherConfig, TranslationConfig):
    extra_train_data: Optional[str] = field(
        default=None,
        metadata={"help": "a second binarized data-bin (same dictionaries, e.g. teacher output from "
                          "fairseq-wd-distill-data) whose train split is concatenated with the original"},
    )
    shortlist: Optional[str] = field(
        default=None,
        metadata={"help": "a lexical shortlist (CTranslate2's vmap.txt, from fairseq-wd-shortlist): beam search "
                          "scores only the target tokens it allows for the batch's source tokens (plus its "
                          "always list, <unk>, <s>, </s>), so the output layer costs less; checked when the task starts"},
    )


@register_task("distillation", dataclass=DistillationConfig)
class DistillationTask(TeacherAware, TranslationTask):
    cfg: DistillationConfig

    def __init__(self, cfg, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        self.shortlist = None
        if cfg.shortlist:  # a broken file stops here, before any model is loaded
            self.shortlist = Shortlist.from_file(cfg.shortlist, src_dict, tgt_dict)
            logger.info("shortlist %s: %d source keys, %d targets always", cfg.shortlist,
                        int((self.shortlist.table != tgt_dict.eos()).any(1).sum()), len(self.shortlist.always))

    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None, **kwargs):
        """With --shortlist, fairseq's generator whose model wrapper projects onto the batch's candidates."""
        if self.shortlist is not None and not getattr(args, "score_reference", False):
            if seq_gen_cls is not None or getattr(args, "print_alignment", False):
                raise ValueError("--shortlist works with fairseq's plain SequenceGenerator only "
                                 "(not with --print-alignment or another generator class)")
            seq_gen_cls = ShortlistSequenceGenerator
            extra_gen_cls_kwargs = dict(extra_gen_cls_kwargs or {}, shortlist=self.shortlist)
        return super().build_generator(models, args, seq_gen_cls=seq_gen_cls,
                                       extra_gen_cls_kwargs=extra_gen_cls_kwargs, **kwargs)

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
