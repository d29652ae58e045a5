#!/usr/bin/env bash
# The paper's experiment on one prepared data-bin (sourced by examples/*/run.sh, which set SRC, TGT,
# DATA, WORK, TEACHER_ARCH and BLEU_TOKENIZE). Settings: ../../shared METHODS 1.4-1.6, i.e. the WD
# authors' released scripts: Adam (0.9, 0.98), inverse_sqrt, lr 7e-4, label smoothing 0.1, fp16,
# ~32k target tokens per update (8 GPUs x 4096; fewer GPUs: UPDATE_FREQ=8/NGPU), the teacher's last 5
# epoch checkpoints averaged, teacher output by beam 6 / lenpen 1.0 / batch 64, WD phases of 30k
# updates each (warmup 4000 then 1000). Dropout is the architecture's: 0.1, 0.3 for big and its students.
# Students keep their teacher's encoder and shrink the decoder (wd_transformer[_big|_deep]_tiny/small).
# Each stage is skipped when its checkpoint exists; fairseq-train resumes a killed stage by itself.
set -euo pipefail
: "${SRC:?}" "${TGT:?}" "${DATA:?}" "${WORK:?}" "${TEACHER_ARCH:=wd_transformer_base}" "${BLEU_TOKENIZE:=13a}"
UPDATE_FREQ=${UPDATE_FREQ:-1}
TEACHER_UPDATES=${TEACHER_UPDATES:-100000}
STUDENT_UPDATES=${STUDENT_UPDATES:-30000}
USER_DIR=$(fairseq-wd-user-dir)
COMMON=(--user-dir "$USER_DIR" --optimizer adam --adam-betas "(0.9, 0.98)" --clip-norm 0
        --lr-scheduler inverse_sqrt --warmup-init-lr 1e-07 --lr 0.0007 --label-smoothing 0.1
        --max-tokens 4096 --update-freq "$UPDATE_FREQ" --fp16 --seed 1 --keep-last-epochs 5 --log-interval 100)

stage() {  # stage NAME UPDATES WARMUP fairseq-train args...
  local name=$1 updates=$2 warmup=$3; shift 3
  [ -f "$WORK/$name/done" ] && { echo "== $name: done already"; return; }
  echo "== $name"
  fairseq-train "${COMMON[@]}" --save-dir "$WORK/$name" --max-update "$updates" --warmup-updates "$warmup" "$@"
  touch "$WORK/$name/done"
}

# 1. teacher (separate source/target embeddings, as the authors)
stage teacher "$TEACHER_UPDATES" 4000 "$DATA" --arch "$TEACHER_ARCH" --criterion label_smoothed_cross_entropy
TEACHER=$WORK/teacher/checkpoint.avg5.pt
[ -f "$TEACHER" ] || fairseq-wd-average-checkpoints --inputs "$WORK/teacher" --num-epoch-checkpoints 5 --output "$TEACHER"

# 2. sequence-level KD data: the teacher's beam output for the train set (resumable, shardable)
[ -f "$WORK/kd-bin/train.$SRC-$TGT.$TGT.bin" ] || fairseq-wd-distill-data "$DATA" --user-dir "$USER_DIR" \
  --path "$TEACHER" --gen-subset train --beam 6 --lenpen 1.0 --batch-size 64 --fp16 --dest "$WORK/kd-bin"

MODELS=(--model "teacher=$TEACHER")
case $TEACHER_ARCH in  # the teacher's students: wd_transformer_tiny for base, wd_transformer_big_tiny for big
  wd_transformer_base) FAMILY=wd_transformer ;;
  *) FAMILY=$TEACHER_ARCH ;;
esac
for STUDENT in tiny small; do
  ARCH=${FAMILY}_$STUDENT
  # 3. KD baseline of the same size: trained on original + teacher output (the WD authors' "vs KD")
  stage "${STUDENT}_kd" "$STUDENT_UPDATES" 4000 "$DATA" --arch "$ARCH" --task distillation \
    --extra-train-data "$WORK/kd-bin" --criterion label_smoothed_cross_entropy
  # 4. WD phase 1: the parameter generator, on the same data, plain label-smoothed CE
  stage "${STUDENT}_wd_phase1" "$STUDENT_UPDATES" 4000 "$DATA" --arch "$ARCH" --task weight_distillation \
    --teacher-path "$TEACHER" --extra-train-data "$WORK/kd-bin" --criterion weight_distillation
  [ -f "$WORK/${STUDENT}_wd_phase1/student.pt" ] || \
    fairseq-wd-export "$WORK/${STUDENT}_wd_phase1/checkpoint_best.pt" --output "$WORK/${STUDENT}_wd_phase1/student.pt"
  # 5. WD phase 2: fine-tune the generated student
  stage "${STUDENT}_wd_phase2" "$STUDENT_UPDATES" 1000 "$DATA" --arch "$ARCH" --task distillation \
    --extra-train-data "$WORK/kd-bin" --finetune-from-model "$WORK/${STUDENT}_wd_phase1/student.pt" \
    --criterion label_smoothed_cross_entropy
  MODELS+=(--model "${STUDENT^^} KD=$WORK/${STUDENT}_kd/checkpoint_best.pt"
           --model "${STUDENT^^} WD=$WORK/${STUDENT}_wd_phase2/checkpoint_best.pt")
done

# 6. BLEU and speed, as the authors decode: beam 6, lenpen 1.0, batch 64
REFS=()
for r in "${REFERENCES[@]:-$(dirname "$DATA")/raw/test.$TGT}"; do REFS+=(--references "$r"); done
fairseq-wd-bench "$DATA" "${MODELS[@]}" "${REFS[@]}" --tokenize "$BLEU_TOKENIZE" ${BLEU_LOWERCASE:+--lowercase} --output-dir "$WORK/bench"
