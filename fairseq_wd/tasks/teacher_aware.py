"""The teacher part of the plugin's tasks: one mixin for the bilingual tasks (`distillation`,
`weight_distillation`, over fairseq's `translation`) and the multilingual ones (over
`translation_multi_simple_epoch`), so that both check and run a teacher the same way.

The teacher lives on the task, not in the student: read once (`task.teacher`, a `Teacher`) and checked
against the dictionaries when the student is built for training; its model is built in eval mode
without gradients when a criterion first needs it, and moved lazily to the student's device and dtype.
It is therefore never saved in student checkpoints, never wrapped by DDP, and never loaded at generate
time (`build_model(from_checkpoint=True)`). It runs on the student's batch as it is: in a multilingual
batch the language tokens are already in `src_tokens` and `prev_output_tokens`.

What a criterion may use: `has_teacher()`, `teacher` (weights, config), `get_teacher()` (the model),
`teacher_output(...)`, and `student_args` (the student's model config, set when it is built).
"""
import logging
from dataclasses import dataclass, field
from typing import Optional

from fairseq.dataclass import FairseqDataclass

from .. import languages
from ..teacher.checkpoint import Teacher, teacher_dictionaries, teacher_forward

logger = logging.getLogger(__name__)


@dataclass
class TeacherConfig(FairseqDataclass):
    teacher_path: Optional[str] = field(
        default=None,
        metadata={"help": "teacher checkpoint (a fairseq translation model on the same dictionaries); "
                          "needed by online logit_kd / pkd and by weight distillation, not by sequence-level KD"},
    )
    teacher_dict: Optional[str] = field(
        default=None,
        metadata={"help": "the teacher's own dictionaries: its data-bin (dict.SRC.txt, dict.TGT.txt) or one joined "
                          "dict.txt (M2M-100, NLLB: its --fixed-dictionary); every symbol must match the data's (a "
                          "multilingual task adds its language tokens to it as to the data's). Without it only the "
                          "sizes can be checked (a checkpoint holds no dictionary), except for a multilingual teacher "
                          "whose own dictionary files (its checkpoint names them) are on this machine"},
    )


def check_teacher(teacher, task, teacher_dict=None):
    """`teacher` against `task`'s dictionaries (every symbol with `teacher_dict`) and, for a multilingual
    task, against its language settings; raises CheckpointError naming the fix. True where every symbol
    was compared, False where only the sizes could be."""
    if languages.is_multilingual(task):
        return languages.check_teacher(teacher, task, teacher_dict)
    own = teacher_dict and teacher_dictionaries(teacher_dict, task.cfg.source_lang, task.cfg.target_lang)
    teacher.check_dictionaries(task.source_dictionary, task.target_dictionary, teacher_dicts=own)
    return bool(own)


class TeacherAware:
    """Mixin, listed before a fairseq translation task's class. Its options (TeacherConfig) are read from
    the task's dataclass config, or from its args for a legacy task such as translation_multi_simple_epoch."""

    _teacher = None
    _symbols_compared = False
    student_args = None

    @property
    def teacher_options(self):
        return self.cfg if getattr(self, "cfg", None) is not None else self.args

    def build_model(self, cfg, from_checkpoint=False):
        if not from_checkpoint and self.has_teacher():  # a wrong or mismatched teacher fails here, before training
            logger.info("teacher %s: %s", self.teacher.path, "its dictionaries are the data's"
                        if self._symbols_compared else
                        "embedding sizes match the data's dictionaries (symbols not compared: no --teacher-dict)")
        model = super().build_model(cfg, from_checkpoint)
        if not from_checkpoint:
            self.student_args = cfg
        return model

    def has_teacher(self):
        return bool(getattr(self.teacher_options, "teacher_path", None))

    @property
    def teacher(self):
        """The --teacher-path checkpoint, read and checked against the data's dictionaries on first use."""
        if self._teacher is None:
            if not self.has_teacher():
                raise ValueError("this criterion needs a teacher: pass --teacher-path TEACHER.pt")
            teacher = Teacher(self.teacher_options.teacher_path)
            self._symbols_compared = check_teacher(teacher, self, self.teacher_options.teacher_dict)
            self._teacher = teacher
        return self._teacher

    def get_teacher(self):
        return self.teacher.model(self)

    def teacher_output(self, student, net_input, **kwargs):
        return teacher_forward(self.get_teacher(), student, net_input, **kwargs)
