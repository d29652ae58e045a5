#!/usr/bin/env bash
# WMT16 En-Ro (Europarl v8 + SETimes2, 610k pairs; valid newsdev2016, test newstest2016) ->
# joint sentencepiece (32k) -> fairseq-preprocess.   Usage: prepare.sh [WORK] (default data/wmt16_en_ro)
SRC=en TGT=ro WORK=${1:-data/wmt16_en_ro}
source "$(dirname "$0")/../common/prepare_common.sh"

download() {
  local d=$WORK/download; mkdir -p "$d"
  fetch http://data.statmt.org/wmt16/translation-task/training-parallel-ep-v8.tgz "$d/ep.tgz"
  fetch https://object.pouta.csc.fi/OPUS-SETIMES/v2/moses/en-ro.txt.zip "$d/setimes.zip"
  tar -xzf "$d/ep.tgz" -C "$d" && (cd "$d" && unzip -o -q setimes.zip)
  cat "$d"/training-parallel-ep-v8/europarl-v8.ro-en.en "$d"/SETIMES.en-ro.en > "$RAW/train.en"
  cat "$d"/training-parallel-ep-v8/europarl-v8.ro-en.ro "$d"/SETIMES.en-ro.ro > "$RAW/train.ro"
  sacrebleu_set wmt16/dev valid
  sacrebleu_set wmt16 test
}

binarize
