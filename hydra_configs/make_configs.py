"""Writes hydra_configs/*.yaml, or into the folder given as argument.

Each file is self-contained: fairseq validates a primary config against its own schema, whose
defaults would override the values of a shared file in a hydra defaults list."""
import os
import sys

from omegaconf import OmegaConf

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))

PAPER = {  # the WD authors' released training settings (METHODS 1.4-1.6)
    "common": {"fp16": True, "log_interval": 100, "seed": 1},
    "dataset": {"max_tokens": 4096},
    "optimization": {"max_update": 30000, "lr": [0.0007], "clip_norm": 0.0, "update_freq": [1]},
    "checkpoint": {"keep_last_epochs": 5},
    "optimizer": {"_name": "adam", "adam_betas": "(0.9, 0.98)"},
    "lr_scheduler": {"_name": "inverse_sqrt", "warmup_updates": 4000, "warmup_init_lr": 1e-07},
    "criterion": {"_name": "label_smoothed_cross_entropy", "label_smoothing": 0.1},
}
PAPER_NOTE = ("# Settings: the WD authors' released scripts (METHODS 1.4-1.6): Adam (0.9, 0.98), no clipping,\n"
              "# inverse_sqrt from 1e-7, lr 7e-4, label smoothing 0.1, fp16, 4096 tokens per GPU on 8 GPUs\n"
              "# (on N GPUs add optimization.update_freq=[8/N]); on a CPU add common.cpu=true common.fp16=false.\n")
ENC = {"encoder_embed_dim": 512, "encoder_ffn_embed_dim": 2048, "encoder_layers": 6, "encoder_attention_heads": 8}
TEACHERS = {
    "base": ("6-6, 512/2048, 8 heads", {**ENC, "decoder_layers": 6, "dropout": 0.1}),
    "big": ("6-6, 1024/4096, 16 heads, dropout 0.3",
            {**ENC, "encoder_embed_dim": 1024, "encoder_ffn_embed_dim": 4096, "encoder_attention_heads": 16,
             "decoder_layers": 6, "dropout": 0.3}),
    "deep": ("48-layer pre-norm encoder, 6-layer decoder, 512/2048",
             {**ENC, "encoder_layers": 48, "decoder_layers": 6, "encoder_normalize_before": True,
              "decoder_normalize_before": True, "dropout": 0.1}),
}
# The paper's students keep their teacher's encoder (and dropout) and shrink the decoder; TINY's
# half-width decoder follows from the encoder width (arch wd_transformer[_big|_deep]_tiny).
STUDENTS = {
    "tiny": ("TINY ({teacher}'s encoder, 1 decoder layer at half its width)", {"decoder_layers": 1}),
    "small": ("SMALL ({teacher}'s encoder, 2 decoder layers)", {"decoder_layers": 2}),
}


def write(name, what, needs, experiment):
    cfg = OmegaConf.merge(PAPER, experiment)
    usage = (f"#   fairseq-hydra-train --config-dir hydra_configs --config-name {name} \\\n"
             f"#     common.user_dir=$(fairseq-wd-user-dir) task.data=DATA-BIN{needs}\n")
    with open(os.path.join(OUT, f"{name}.yaml"), "w") as f:
        f.write(f"# {what}\n{usage}{PAPER_NOTE}{OmegaConf.to_yaml(cfg)}")


def model(arch, dims):
    return {"_name": arch, **dims}


for t, (desc, dims) in TEACHERS.items():
    write(f"teacher_{t}", f"Teacher, {t}: {desc}. Stop when valid loss stops improving.", "",
          {"checkpoint": {"save_dir": f"checkpoints/teacher_{t}"}, "optimization": {"max_update": 100000},
           "task": {"_name": "translation", "data": "???"}, "model": model(f"wd_transformer_{t}", dims)})
for t, size in ((t, size) for t in TEACHERS for size in STUDENTS):
    family = "" if t == "base" else f"{t}_"  # kd_tiny for the base teacher, kd_big_tiny for the big one
    s, arch, teacher = f"{family}{size}", f"wd_transformer_{family}{size}", " task.teacher_path=TEACHER.pt"
    desc = STUDENTS[size][0].format(teacher=f"the {t} teacher")
    dims = {**TEACHERS[t][1], **STUDENTS[size][1]}
    kd_task = {"_name": "distillation", "data": "???", "teacher_path": "???"}
    write(f"kd_{s}", f"Word-level KD (logit_kd, alpha 0.5, T 1) for a {desc} student.", teacher,
          {"checkpoint": {"save_dir": f"checkpoints/kd_{s}"}, "task": kd_task, "model": model(arch, dims),
           "criterion": {"_name": "logit_kd", "kd_alpha": 0.5, "kd_temperature": 1.0}})
    write(f"pkd_{s}", f"Patient-KD (logit KD + hidden-state loss) for a {desc} student.", teacher,
          {"checkpoint": {"save_dir": f"checkpoints/pkd_{s}"}, "task": kd_task, "model": model(arch, dims),
           "criterion": {"_name": "pkd", "kd_alpha": 0.5}})
    write(f"wd_phase1_{s}", f"Weight Distillation phase 1 (the parameter generator) for a {desc} student,\n"
          f"# on original + teacher output. Then: fairseq-wd-export checkpoints/wd_phase1_{s}/checkpoint_best.pt "
          "--output student.pt", teacher + " \\\n#     task.extra_train_data=KD-BIN   (teacher output of "
          "fairseq-wd-distill-data)",
          {"checkpoint": {"save_dir": f"checkpoints/wd_phase1_{s}"}, "model": model(arch, dims),
           "task": {"_name": "weight_distillation", "data": "???", "teacher_path": "???", "extra_train_data": None},
           "criterion": {"_name": "weight_distillation"}})
    write(f"wd_phase2_{s}", f"Weight Distillation phase 2: fine-tune the exported {desc} student (warmup 1000).",
          " task.extra_train_data=KD-BIN \\\n#     checkpoint.finetune_from_model=student.pt   (from fairseq-wd-export)",
          {"checkpoint": {"save_dir": f"checkpoints/wd_phase2_{s}", "finetune_from_model": "???"},
           "lr_scheduler": {"warmup_updates": 1000}, "model": model(arch, dims),
           "task": {"_name": "distillation", "data": "???", "extra_train_data": None}})
