#!/usr/bin/env bash
# The paper's experiment on one prepared data-bin (sourced by examples/*/run.sh, which set SRC, TGT,
# DATA, WORK, TEACHER_ARCH and BLEU_TOKENIZE). The settings are the recipe RECIPE (default paper) of
# fairseq_wd/recipes.py, the WD authors' released scripts (docs/methods.md): Adam (0.9, 0.98),
# inverse_sqrt, lr 7e-4, label smoothing 0.1, ~32k target tokens per update (8 GPUs x 4096; fewer
# GPUs: UPDATE_FREQ=8/NGPU), the teacher's last 5 epoch checkpoints averaged, teacher output by beam 6 /
# lenpen 1.0 / batch 64, and 60k updates per student: WD's two phases 30k each, as the authors, and
# the KD baseline the same 60k. Dropout is the architecture's: 0.1, 0.3 for big and its students.
# Students keep their teacher's encoder and shrink the decoder (wd_transformer[_big|_deep]_tiny/small).
# Each stage is skipped when it is done; fairseq-train resumes a killed stage by itself.
# Environment: TEACHER_UPDATES, STUDENT_UPDATES (the recipe's by default), STUDENTS ("tiny small"),
# FP16 (1; 0 on a CPU), DEVICE_ARGS (e.g. --cpu: given to every command, the bench included), BENCH_ARGS
# (more fairseq-wd-bench options). Needs bash >= 4.4 (empty arrays under `set -u`).
set -euo pipefail
: "${SRC:?}" "${TGT:?}" "${DATA:?}" "${WORK:?}" "${BLEU_TOKENIZE:=13a}"
UPDATE_FREQ=${UPDATE_FREQ:-1}
RECIPE_VARIABLES=$(fairseq-wd-recipe "${RECIPE:-paper}")  # a failure stops here (eval "$(...)" would not)
eval "$RECIPE_VARIABLES"
USER_DIR=$(fairseq-wd-user-dir)
DEVICE=(${DEVICE_ARGS:-})
FP16_ARGS=(); [ "${FP16:-1}" = 1 ] && FP16_ARGS=(--fp16)
COMMON=(--user-dir "$USER_DIR" "${TRAIN_ARGS[@]}" --label-smoothing "$LABEL_SMOOTHING" --update-freq "$UPDATE_FREQ"
        "${DEVICE[@]}" "${FP16_ARGS[@]}")

stage() {  # stage NAME UPDATES fairseq-train args...
  local name=$1 updates=$2; shift 2
  [ -f "$WORK/$name/done" ] && { echo "== $name: done already"; return; }
  echo "== $name"
  fairseq-train "${COMMON[@]}" --save-dir "$WORK/$name" --max-update "$updates" "$@"
  touch "$WORK/$name/done"
}

# 1. teacher (separate source/target embeddings, as the authors)
stage teacher "$TEACHER_UPDATES" "$DATA" --arch "$TEACHER_ARCH" "${TEACHER_ARGS[@]}" \
  --criterion label_smoothed_cross_entropy
TEACHER=$WORK/teacher/checkpoint_best.pt
if [ "$AVERAGE_LAST" -gt 0 ]; then
  TEACHER=$WORK/teacher/checkpoint.avg$AVERAGE_LAST.pt
  [ -f "$TEACHER" ] || fairseq-wd-average-checkpoints --inputs "$WORK/teacher" \
    --num-epoch-checkpoints "$AVERAGE_LAST" --output "$TEACHER"
fi

# 2. sequence-level KD data: the teacher's beam output for the train set (resumable, shardable)
if [ ! -f "$WORK/kd-bin/done" ]; then
  fairseq-wd-distill-data "$DATA" --user-dir "$USER_DIR" --path "$TEACHER" --gen-subset train "${DISTILL_ARGS[@]}" \
    "${DEVICE[@]}" "${FP16_ARGS[@]}" --dest "$WORK/kd-bin"
  touch "$WORK/kd-bin/done"
fi

MODELS=(--model "teacher=$TEACHER")
case $TEACHER_ARCH in  # the teacher's students: wd_transformer_tiny for base, wd_transformer_big_tiny for big
  wd_transformer_base) FAMILY=wd_transformer ;;
  *) FAMILY=$TEACHER_ARCH ;;
esac
for STUDENT in ${STUDENTS:-tiny small}; do
  STUDENT_ARGS=(--arch "${FAMILY}_$STUDENT" "${STUDENT_ENCODER_ARGS[@]}")
  # 3. KD baseline of the same size: trained on original + teacher output (the WD authors' "vs KD")
  stage "${STUDENT}_kd" "$STUDENT_UPDATES" "$DATA" "${STUDENT_ARGS[@]}" --task distillation \
    --extra-train-data "$WORK/kd-bin" --criterion label_smoothed_cross_entropy
  # 4. WD phase 1: the parameter generator, on the same data, plain label-smoothed CE
  stage "${STUDENT}_wd_phase1" "$WD_PHASE1_UPDATES" "$DATA" "${STUDENT_ARGS[@]}" --task weight_distillation \
    --teacher-path "$TEACHER" --extra-train-data "$WORK/kd-bin" --criterion weight_distillation "${WD_PHASE1_ARGS[@]}"
  [ -f "$WORK/${STUDENT}_wd_phase1/student.pt" ] || \
    fairseq-wd-export "$WORK/${STUDENT}_wd_phase1/checkpoint_best.pt" --output "$WORK/${STUDENT}_wd_phase1/student.pt"
  # 5. WD phase 2: fine-tune the generated student
  stage "${STUDENT}_wd_phase2" "$WD_PHASE2_UPDATES" "$DATA" "${STUDENT_ARGS[@]}" --task distillation \
    --extra-train-data "$WORK/kd-bin" --finetune-from-model "$WORK/${STUDENT}_wd_phase1/student.pt" \
    --criterion label_smoothed_cross_entropy "${WD_PHASE2_ARGS[@]}"
  MODELS+=(--model "${STUDENT^^} KD=$WORK/${STUDENT}_kd/checkpoint_best.pt"
           --model "${STUDENT^^} WD=$WORK/${STUDENT}_wd_phase2/checkpoint_best.pt")
done

# 6. BLEU and speed, as the authors decode: beam 6, lenpen 1.0, batch 64
REFS=()
for r in "${REFERENCES[@]:-$(dirname "$DATA")/raw/test.$TGT}"; do REFS+=(--references "$r"); done
fairseq-wd-bench "$DATA" "${MODELS[@]}" "${REFS[@]}" --tokenize "$BLEU_TOKENIZE" ${BLEU_LOWERCASE:+--lowercase} \
  "${DEVICE[@]}" ${BENCH_ARGS:-} --output-dir "$WORK/bench"
