#!/usr/bin/env bash
# The GPU path end to end: the toy pipeline under --fp16 (teacher, teacher output, KD, WD phase 1 and 2,
# export, CTranslate2 on the GPU, bench), then a 2-GPU data-parallel WD phase-1 step where two GPUs exist.
# One PASS, FAIL or SKIP line per part; exits 1 if any part failed. Under 8 minutes on one GPU.
#
#   bash examples/gpu_check.sh [--cpu [--ddp]] [--work-dir DIR] [-- MORE fairseq-wd-pipeline OPTIONS]
#
# --cpu: the same parts in fp32 on the CPU (the test suite runs it on a toy corpus, e.g.
# `-- --tsv toy.tsv --source-lang src --target-lang tgt --update-scale 0.01`); the data-parallel step
# only with --ddp, as two gloo processes. Options after `--` go to fairseq-wd-pipeline after this
# script's own, so they win (e.g. `-- --update-scale 0.2`).
set -u

CPU=0
DDP_ON_CPU=0
WORK=""
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) CPU=1; shift ;;
    --ddp) DDP_ON_CPU=1; shift ;;
    --work-dir) WORK="$2"; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if command -v fairseq-wd-pipeline >/dev/null 2>&1; then
  BIN="$(dirname "$(command -v fairseq-wd-pipeline)")"
else
  BIN="$REPO/.venv/bin"
fi
PYTHON="$BIN/python"
[ -x "$PYTHON" ] || PYTHON="$(command -v python3)"
WORK="${WORK:-$REPO/runs/gpu_check}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
P="$WORK/pipeline"  # the pipeline's work dir

if [ "$CPU" = 1 ]; then
  DEVICE=cpu; PRECISION=fp32; FP16=(); GPUS=0
else
  DEVICE=cuda; PRECISION=fp16; FP16=(--fp16)
  GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
  if [ "$GPUS" -lt 1 ] || ! "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    echo "FAIL device: no GPU visible to torch (nvidia-smi -L: $GPUS); run with --cpu for the CPU parts"
    exit 1
  fi
fi

PASSED=0; FAILED=0; SKIPPED=0
pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1${2:+: $2}"; FAILED=$((FAILED + 1)); }
skip() { echo "SKIP $1${2:+: $2}"; SKIPPED=$((SKIPPED + 1)); }
check() {  # check NAME COMMAND...: PASS when the command succeeds, else FAIL with its last output line
  local name="$1"; shift
  local out
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$(echo "$out" | tail -n 1)"; fi
}

if [ "$CPU" = 1 ]; then WHAT="$(nproc --all) cores"; else WHAT="$(nvidia-smi -L | head -n 1), $GPUS GPU(s)"; fi
echo "gpu_check: device $DEVICE ($WHAT), precision $PRECISION, work dir $WORK"
echo "gpu_check: torch $("$PYTHON" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)')"
START=$(date +%s)

# -- the pipeline: every part below reads what it wrote ------------------------------------------------
"$BIN/fairseq-wd-pipeline" --work-dir "$P" --train-teacher --methods kd,wd --update-scale 0.05 --bench-repeats 1 \
  --test-size 200 --valid-size 100 ${FP16[@]+"${FP16[@]}"} ${EXTRA[@]+"${EXTRA[@]}"} > "$WORK/pipeline.log" 2>&1
RC=$?
if [ $RC = 0 ]; then pass "pipeline ($(( $(date +%s) - START ))s)"; else
  fail "pipeline" "exit $RC, see $WORK/pipeline.log: $(tail -n 1 "$WORK/pipeline.log")"; fi

training() {  # training FOLDER: finished, finite losses, and (fp16) fairseq's loss scaler in its log
  "$PYTHON" - "$P/$1" "$PRECISION" <<'EOF'
import math, os, re, sys
folder, precision = sys.argv[1:]
log = open(os.path.join(folder, "train.log")).read()
assert os.path.exists(os.path.join(folder, "checkpoint_best.pt")), f"no checkpoint_best.pt in {folder}"
assert "done training" in log, "training did not finish"
losses = [float(x) for x in re.findall(r"[ |]loss[= ]([^ ,|]+)", log)]  # train_inner loss=, epoch | loss
assert losses and all(math.isfinite(x) for x in losses), f"losses {losses}"
scaled = re.search(r"[ |]loss_scale[= ]\d", log) is not None  # fairseq's fp16 optimizer logs it
assert scaled == (precision == "fp16"), f"fairseq's fp16 loss scaler {'not ' if not scaled else ''}in the log"
print(f"{len(losses)} finite losses, last {losses[-1]}")
EOF
}
check "teacher ($PRECISION)" training teacher
distill_data() {  # the teacher output exists, made by a command (the step's mark) of this precision
  ls "$P"/kd-bin/train.*.bin >/dev/null || return 1
  "$PYTHON" - "$P/kd-bin.step.json" "$PRECISION" <<'EOF'
import json, sys
mark, precision = sys.argv[1:]
what = json.load(open(mark))["record"]["what"]
assert ("--fp16" in what) == (precision == "fp16"), f"{precision} run, but fairseq-wd-distill-data ran as {what}"
EOF
}
check "distill-data ($PRECISION)" distill_data
check "KD student ($PRECISION)" training tiny_kd_seed1
check "WD phase 1 ($PRECISION)" training tiny_wd_phase1_seed1
check "WD phase 2 ($PRECISION)" training tiny_wd_phase2_seed1
exported() {  # the phase-1 export and the CTranslate2 copies (teacher, KD, WD)
  [ -s "$P/tiny_wd_phase1_seed1/student.pt" ] || { echo "no exported phase-1 student"; return 1; }
  local n
  n=$(ls "$P"/ct2/*/model.bin 2>/dev/null | wc -l)
  [ "$n" -ge 3 ] || { echo "$n CTranslate2 models, expected 3 (ctranslate2 installed?)"; return 1; }
}
check "export (phase-1 student, CTranslate2)" exported
ctranslate2_on_device() {  # the bench decoded the CTranslate2 rows on DEVICE; a copy loads and translates there
  "$PYTHON" - "$P" "$DEVICE" <<'EOF'
import json, math, os, sys
import ctranslate2
work, device = sys.argv[1:]
report = json.load(open(os.path.join(work, "bench", "bench.json")))
assert report["settings"]["device"] == device, f"the bench decoded on {report['settings']['device']}"
rows = [m for m in report["models"] if "CTranslate2" in m["name"]]
assert rows and all(math.isfinite(m["bleu"]) and m["sentences_per_s"] > 0 for m in rows), rows
translator = ctranslate2.Translator(os.path.join(work, "ct2", "teacher"), device=device)
out = translator.translate_batch([["▁a", "</s>"]], beam_size=2, max_decoding_length=8)
print(f"{len(rows)} CTranslate2 rows on {device}; one sentence: {out[0].hypotheses[0]}")
EOF
}
check "CTranslate2 on $DEVICE" ctranslate2_on_device
bench_footer() {
  grep -q "fairseq rows in $PRECISION" "$P/bench/bench.md" ||
    { echo "bench.md does not say 'fairseq rows in $PRECISION'"; return 1; }
}
check "bench (footer: fairseq rows in $PRECISION)" bench_footer

# -- data-parallel WD phase 1: two GPUs (nccl), or two gloo processes with --cpu --------------------------
if [ "$CPU" = 0 ] && [ "$GPUS" -lt 2 ]; then
  skip "DDP WD phase 1" "$GPUS GPU (needs 2)"
elif [ "$CPU" = 1 ] && [ "$DDP_ON_CPU" = 0 ]; then
  skip "DDP WD phase 1" "needs 2 GPUs, or --ddp for two gloo processes"
elif [ ! -s "$P/teacher/checkpoint_best.pt" ]; then
  fail "DDP WD phase 1" "no teacher from the pipeline"
else
  ENCODER='from fairseq_wd.recipes import RECIPES; print(" ".join(RECIPES["demo"].student_encoder))'
  read -r -a STUDENT <<< "$("$PYTHON" -c "$ENCODER" 2>/dev/null)"  # the pipeline's students' encoder
  if [ "$CPU" = 1 ]; then DIST=(--cpu --distributed-backend gloo); else DIST=(${FP16[@]+"${FP16[@]}"}); fi
  PORT=$((29000 + RANDOM % 1000))
  rm -rf "$WORK/ddp"  # a fresh training: fairseq would resume from a checkpoint_last.pt left there
  OMP_NUM_THREADS=1 "$BIN/torchrun" --nproc_per_node 2 --master_port "$PORT" "$BIN/fairseq-train" "$P/data-bin" \
    --user-dir "$REPO/fairseq_wd" --task weight_distillation --teacher-path "$P/teacher/checkpoint_best.pt" \
    --criterion weight_distillation --arch wd_transformer_tiny ${STUDENT[@]+"${STUDENT[@]}"} \
    --optimizer adam --lr 0.0005 --max-tokens 2048 --max-update 4 --log-interval 1 --no-progress-bar \
    --num-workers 0 --disable-validation \
    --save-dir "$WORK/ddp" --no-epoch-checkpoints --distributed-world-size 2 ${DIST[@]+"${DIST[@]}"} \
    > "$WORK/ddp.log" 2>&1
  RC=$?
  ddp() {
    [ $RC = 0 ] || { echo "exit $RC, see $WORK/ddp.log: $(tail -n 1 "$WORK/ddp.log")"; return 1; }
    grep -q "distributed init (rank 1)" "$WORK/ddp.log" || { echo "rank 1 never started"; return 1; }
    grep -q "done training" "$WORK/ddp.log" || { echo "training did not finish"; return 1; }
    ! grep -Eq "loss=(nan|inf)" "$WORK/ddp.log" || { echo "a non-finite loss"; return 1; }
  }
  check "DDP WD phase 1 (2 $([ "$CPU" = 1 ] && echo "gloo processes" || echo GPUs), $PRECISION)" ddp
fi

echo "gpu_check: $PASSED passed, $FAILED failed, $SKIPPED skipped in $(( $(date +%s) - START ))s on $DEVICE"
[ "$FAILED" = 0 ]
