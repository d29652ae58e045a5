#!/usr/bin/env bash
# Teacher (base), KD and WD students (TINY, SMALL), benchmark against all test references.
# After prepare.sh. Usage: run.sh [WORK]. With N GPUs set UPDATE_FREQ=$((8/N)).
export SRC=zh TGT=en WORK=${1:-data/nist_zh_en}
export DATA=$WORK/data-bin TEACHER_ARCH=wd_transformer_base BLEU_TOKENIZE=13a BLEU_LOWERCASE=1
REFERENCES=("$WORK/raw/test.en")
for r in 1 2 3; do [ -f "$WORK/raw/test.en$r" ] && REFERENCES+=("$WORK/raw/test.en$r"); done
source "$(dirname "$0")/../common/run_paper.sh"
