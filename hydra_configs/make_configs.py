"""Writes hydra_configs/*.yaml, or into the folder given as argument, from the `paper` recipe of
fairseq_wd/recipes.py (its fairseq-train flags read by fairseq's own parser) and the architectures
of fairseq_wd/models/architectures.py.

Each file is self-contained: fairseq validates a primary config against its own schema, whose
defaults would override the values of a shared file in a hydra defaults list."""
import argparse
import os
import sys

from fairseq import options
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.models import ARCH_CONFIG_REGISTRY
from omegaconf import OmegaConf

import fairseq_wd  # noqa: F401  (registers the architectures)
from fairseq_wd.recipes import RECIPES

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
RECIPE = RECIPES["paper"]
GROUPS = ("common", "dataset", "optimization", "checkpoint", "optimizer", "lr_scheduler")
NOTE = ("# Settings: fairseq_wd/recipes.py's `paper` recipe, the WD authors' released scripts (docs/methods.md),\n"
        "# with fp16 and 4096 tokens per GPU on 8 GPUs (on N GPUs add optimization.update_freq=[8/N]); on a CPU\n"
        "# add common.cpu=true common.fp16=false.\n")


def train_config(flags, base=()):
    """The hydra groups that fairseq-train `flags` set (after `base`), each value as fairseq's parser reads it."""
    args = options.parse_args_and_arch(options.get_training_parser(), ["DATA", "--arch", "transformer", *base, *flags])
    cfg = convert_namespace_to_omegaconf(args)
    out = {}
    for flag in (f[2:].replace("-", "_") for f in flags if f.startswith("--")):
        if flag in GROUPS:  # --optimizer adam -> optimizer._name
            out[flag] = {"_name": cfg[flag]["_name"], **out.get(flag, {})}
            continue
        group = next(g for g in GROUPS if cfg[g] is not None and flag in cfg[g])  # lr: optimization's, not adam's
        out.setdefault(group, {})[flag] = cfg[group][flag]
    return out


PAPER = OmegaConf.merge(train_config(RECIPE.train), {"common": {"fp16": True},
                                                     "criterion": {"label_smoothing": RECIPE.label_smoothing}})
PHASE1, PHASE2 = RECIPE.wd_phase_updates()
PHASE1_FLAGS, PHASE2_FLAGS = train_config(RECIPE.wd_phase1, RECIPE.train), train_config(RECIPE.wd_phase2, RECIPE.train)
# what a model config states: the sizes, and where LayerNorms sit when not the default post-norm
SIZES = ("encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_layers", "encoder_attention_heads", "decoder_layers",
         "dropout")
NORMS = ("encoder_normalize_before", "decoder_normalize_before")
TEACHERS = {"base": "6-6, 512/2048, 8 heads", "big": "6-6, 1024/4096, 16 heads, dropout 0.3",
            "deep": "48-layer pre-norm encoder, 6-layer decoder, 512/2048"}
STUDENTS = {"tiny": "TINY ({teacher}'s encoder, 1 decoder layer at half its width)",
            "small": "SMALL ({teacher}'s encoder, 2 decoder layers)"}


def model(arch):
    """The architecture's sizes, as its function sets them (the arch is applied again under hydra)."""
    args = argparse.Namespace()
    ARCH_CONFIG_REGISTRY[arch](args)
    return {"_name": arch, **{k: getattr(args, k) for k in SIZES}, **{k: True for k in NORMS if getattr(args, k)}}


def write(name, what, needs, experiment, updates=RECIPE.student_updates):
    cfg = OmegaConf.to_container(OmegaConf.merge(PAPER, {"optimization": {"max_update": updates}}, experiment))
    cfg = {group: dict(sorted(cfg[group].items(), key=lambda kv: kv[0] != "_name"))  # fairseq's order, _name first
           for group in (*GROUPS, "criterion", "task", "model") if group in cfg}
    usage = (f"#   fairseq-hydra-train --config-dir hydra_configs --config-name {name} \\\n"
             f"#     common.user_dir=$(fairseq-wd-user-dir) task.data=DATA-BIN{needs}\n")
    with open(os.path.join(OUT, f"{name}.yaml"), "w") as f:
        f.write(f"# {what}\n{usage}{NOTE}{OmegaConf.to_yaml(cfg)}")


for t, desc in TEACHERS.items():
    write(f"teacher_{t}", f"Teacher, {t}: {desc}. Stop when valid loss stops improving.", "",
          {"checkpoint": {"save_dir": f"checkpoints/teacher_{t}"}, "criterion": {"_name": "label_smoothed_cross_entropy"},
           "task": {"_name": "translation", "data": "???"}, "model": model(f"wd_transformer_{t}")},
          updates=RECIPE.teacher_updates)
for t, size in ((t, size) for t in TEACHERS for size in STUDENTS):
    family = "" if t == "base" else f"{t}_"  # kd_tiny for the base teacher, kd_big_tiny for the big one
    s, teacher = f"{family}{size}", " task.teacher_path=TEACHER.pt"
    desc, arch = STUDENTS[size].format(teacher=f"the {t} teacher"), model(f"wd_transformer_{family}{size}")
    kd_task = {"_name": "distillation", "data": "???", "teacher_path": "???"}
    write(f"kd_{s}", f"Word-level KD (logit_kd, alpha {RECIPE.kd_alpha}, T 1) for a {desc} student.", teacher,
          {"checkpoint": {"save_dir": f"checkpoints/kd_{s}"}, "task": kd_task, "model": arch,
           "criterion": {"_name": "logit_kd", "kd_alpha": RECIPE.kd_alpha, "kd_temperature": 1.0}})
    write(f"pkd_{s}", f"Patient-KD (logit KD + hidden-state loss) for a {desc} student.", teacher,
          {"checkpoint": {"save_dir": f"checkpoints/pkd_{s}"}, "task": kd_task, "model": arch,
           "criterion": {"_name": "pkd", "kd_alpha": RECIPE.kd_alpha}})
    write(f"wd_phase1_{s}", f"Weight Distillation phase 1 (the parameter generator) for a {desc} student,\n"
          f"# on original + teacher output; half of a student's updates. Then: fairseq-wd-export "
          f"checkpoints/wd_phase1_{s}/checkpoint_best.pt --output student.pt", teacher + " \\\n#     "
          "task.extra_train_data=KD-BIN   (teacher output of fairseq-wd-distill-data)",
          OmegaConf.merge(PHASE1_FLAGS,
                          {"checkpoint": {"save_dir": f"checkpoints/wd_phase1_{s}"}, "model": arch,
                           "task": {"_name": "weight_distillation", "data": "???", "teacher_path": "???",
                                    "extra_train_data": None},
                           "criterion": {"_name": "weight_distillation"}}), updates=PHASE1)
    write(f"wd_phase2_{s}", f"Weight Distillation phase 2: fine-tune the exported {desc} student; the other half\n"
          "# of a student's updates.", " task.extra_train_data=KD-BIN \\\n#     "
          "checkpoint.finetune_from_model=student.pt   (from fairseq-wd-export)",
          OmegaConf.merge(PHASE2_FLAGS,
                          {"checkpoint": {"save_dir": f"checkpoints/wd_phase2_{s}", "finetune_from_model": "???"},
                           "model": arch, "criterion": {"_name": "label_smoothed_cross_entropy"},
                           "task": {"_name": "distillation", "data": "???", "extra_train_data": None}}),
          updates=PHASE2)
