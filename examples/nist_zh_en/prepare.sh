#!/usr/bin/env bash
# NIST OpenMT Zh-En (LDC-licensed, ~1.8M pairs): cannot be downloaded, so it takes your local files.
# LOCAL_RAW=DIR must hold train.{zh,en}, valid.{zh,en} (e.g. MT06), test.zh and test.en (e.g. MT08,
# first reference); further references as test.en1 test.en2 test.en3 are passed to the benchmark.
# -> joint sentencepiece (32k; character coverage 0.9995, the default for zh) -> fairseq-preprocess.  Usage: prepare.sh [WORK]
SRC=zh TGT=en WORK=${1:-data/nist_zh_en}
source "$(dirname "$0")/../common/prepare_common.sh"

download() {
  echo "NIST Zh-En is distributed by the LDC under licence and cannot be downloaded here: set" \
       "LOCAL_RAW=DIR holding train/valid/test.{zh,en} (see the top of this script)" >&2
  exit 1
}

binarize
for r in 1 2 3; do [ -f "${LOCAL_RAW:-/nonexistent}/test.en$r" ] && cp "$LOCAL_RAW/test.en$r" "$RAW/"; done
true
