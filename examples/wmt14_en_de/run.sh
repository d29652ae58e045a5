#!/usr/bin/env bash
# Teacher (TEACHER_ARCH: wd_transformer_base | wd_transformer_big | wd_transformer_deep), KD and WD
# students (TINY, SMALL), benchmark. After prepare.sh. Usage: [TEACHER_ARCH=...] run.sh [WORK]
# 8 GPUs as the authors; with N GPUs set UPDATE_FREQ=$((8/N)) to keep ~32k tokens per update.
export SRC=en TGT=de WORK=${1:-data/wmt14_en_de}
export DATA=$WORK/data-bin TEACHER_ARCH=${TEACHER_ARCH:-wd_transformer_base} BLEU_TOKENIZE=13a
exec bash "$(dirname "$0")/../common/run_paper.sh"
