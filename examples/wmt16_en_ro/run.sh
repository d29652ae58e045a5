#!/usr/bin/env bash
# Teacher (base), KD and WD students (TINY, SMALL), benchmark. After prepare.sh. Usage: run.sh [WORK]
# 8 GPUs as the authors; with N GPUs set UPDATE_FREQ=$((8/N)) to keep ~32k tokens per update.
export SRC=en TGT=ro WORK=${1:-data/wmt16_en_ro}
export DATA=$WORK/data-bin TEACHER_ARCH=wd_transformer_base BLEU_TOKENIZE=13a
exec bash "$(dirname "$0")/../common/run_paper.sh"
