#!/usr/bin/env bash
# WMT14 En-De (Europarl v7 + Common Crawl + News Commentary v9, 4.5M pairs; valid newstest2013, test
# newstest2014) -> joint sentencepiece (32k) -> fairseq-preprocess.   Usage: prepare.sh [WORK]
SRC=en TGT=de WORK=${1:-data/wmt14_en_de}
source "$(dirname "$0")/../common/prepare_common.sh"

download() {
  local d=$WORK/download; mkdir -p "$d"
  fetch http://statmt.org/wmt13/training-parallel-europarl-v7.tgz "$d/ep.tgz"
  fetch http://statmt.org/wmt13/training-parallel-commoncrawl.tgz "$d/cc.tgz"
  fetch http://statmt.org/wmt14/training-parallel-nc-v9.tgz "$d/nc.tgz"
  for t in ep cc nc; do tar -xzf "$d/$t.tgz" -C "$d"; done
  cat "$d"/training/europarl-v7.de-en.en "$d"/commoncrawl.de-en.en "$d"/training/news-commentary-v9.de-en.en > "$RAW/train.en"
  cat "$d"/training/europarl-v7.de-en.de "$d"/commoncrawl.de-en.de "$d"/training/news-commentary-v9.de-en.de > "$RAW/train.de"
  sacrebleu_set wmt13 valid
  sacrebleu_set wmt14/full test
}

binarize
