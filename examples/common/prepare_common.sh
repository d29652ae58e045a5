# Sourced by examples/*/prepare.sh. Needs SRC, TGT, WORK; the recipe defines download() (fills $RAW).
# LOCAL_RAW=DIR with {train,valid,test}.{SRC,TGT} skips the download (also how the tests run it).
set -euo pipefail
RAW=$WORK/raw
PYTHON=${PYTHON:-python}
mkdir -p "$RAW"

fetch() {  # fetch URL FILE: download once, with a clear message where there is no network
  [ -s "$2" ] && return
  curl -fL --retry 3 -o "$2.part" "$1" && mv "$2.part" "$2" || {
    echo "could not download $1: no network? Put the files in $RAW yourself or set LOCAL_RAW=DIR" >&2; exit 1; }
}

sacrebleu_set() {  # sacrebleu_set TESTSET SPLIT: official dev/test sets through sacrebleu's own downloader
  sacrebleu -t "$1" -l "$SRC-$TGT" --echo src > "$RAW/$2.$SRC"
  sacrebleu -t "$1" -l "$SRC-$TGT" --echo ref > "$RAW/$2.$TGT"
}

binarize() {
  if [ -n "${LOCAL_RAW:-}" ]; then
    for f in {train,valid,test}.{$SRC,$TGT}; do cp "$LOCAL_RAW/$f" "$RAW/$f"; done
  elif [ ! -s "$RAW/test.$TGT" ]; then
    download
  fi
  wc -l "$RAW"/{train,valid,test}.{$SRC,$TGT}
  $PYTHON -m fairseq_wd.pipeline.binarize --raw "$RAW" --source-lang "$SRC" --target-lang "$TGT" \
    --vocab-size "${VOCAB:-32000}" ${CHARACTER_COVERAGE:+--character-coverage "$CHARACTER_COVERAGE"} --dest "$WORK/data-bin"
}
