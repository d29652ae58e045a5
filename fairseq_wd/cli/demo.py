"""`make demo`: a real, short train -> distil -> generate -> BLEU/speed run on the shipped corpus.

mpl.en-ro (10,770 LibreOffice/Firefox string pairs, MPL-2.0, see data/PROVENANCE.md) is split
deterministically (seeded shuffle: 500 test, 300 valid, the rest train), encoded with a joint
sentencepiece model, binarized, then a small teacher and TINY students (half-width 1-layer decoder)
with the same update budget: from scratch; on the teacher's beam output (sequence-level KD); with
word-level KD (`logit_kd`); with Patient-KD (`pkd`); and Weight Distillation, phase 1 (generator,
on original + teacher output) -> export -> phase 2 (fine-tuning), half the budget each. Each step is
skipped when its output exists, so a killed demo resumes. Updates are scaled by DEMO_SCALE.
"""
import lzma
import os
import random
import re
import subprocess
import sys

import sentencepiece as spm

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "mpl.en-ro.tsv.xz")
USER_DIR = os.path.dirname(os.path.dirname(__file__))
WORK = os.environ.get("DEMO_DIR", "demo")
SCALE = float(os.environ.get("DEMO_SCALE", "1.0"))
BIN = os.path.dirname(sys.executable)

ENCODER = ["--encoder-embed-dim", "128", "--encoder-ffn-embed-dim", "512", "--encoder-attention-heads", "4",
           "--encoder-layers", "3"]
TEACHER = ["--arch", "wd_transformer_base", *ENCODER, "--decoder-layers", "3", "--decoder-attention-heads", "4"]
STUDENT = ["--arch", "wd_transformer_tiny", *ENCODER, "--decoder-attention-heads", "4"]
TRAIN = ["--cpu", "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "0.002", "--lr-scheduler",
         "inverse_sqrt", "--warmup-updates", "100", "--max-tokens", "4096", "--dropout", "0.1",
         "--label-smoothing", "0.1", "--no-epoch-checkpoints", "--log-interval", "25", "--seed", "1"]


def sh(*cmd, out=None):
    print("+", " ".join(map(str, cmd)), flush=True)
    exe = os.path.join(BIN, cmd[0]) if os.path.exists(os.path.join(BIN, cmd[0])) else cmd[0]
    res = subprocess.run([exe, *map(str, cmd[1:])], check=True, text=True,
                         stdout=subprocess.PIPE if out else None, stderr=subprocess.STDOUT if out else None)
    return res.stdout


def prepare():
    raw = os.path.join(WORK, "raw")
    if os.path.exists(os.path.join(WORK, "data-bin", "dict.ro.txt")):
        return
    os.makedirs(raw, exist_ok=True)
    pairs = [line.rstrip("\n").split("\t") for line in lzma.open(DATA, "rt", encoding="utf-8")]
    random.Random(1).shuffle(pairs)
    splits = {"test": pairs[:500], "valid": pairs[500:800], "train": pairs[800:]}
    for split, rows in splits.items():
        for col, lang in ((0, "en"), (1, "ro")):
            with open(os.path.join(raw, f"{split}.{lang}"), "w", encoding="utf-8") as f:
                f.writelines(r[col] + "\n" for r in rows)
    spm.SentencePieceTrainer.train(input=f"{raw}/train.en,{raw}/train.ro", model_prefix=f"{WORK}/spm",
                                   vocab_size=4000, character_coverage=1.0, num_threads=2)
    sp = spm.SentencePieceProcessor(model_file=f"{WORK}/spm.model")
    for split in splits:
        for lang in ("en", "ro"):
            with open(f"{raw}/{split}.{lang}", encoding="utf-8") as f, open(f"{raw}/{split}.spm.{lang}", "w") as g:
                g.writelines(" ".join(sp.encode(line.strip(), out_type=str)) + "\n" for line in f)
    sh("fairseq-preprocess", "--source-lang", "en", "--target-lang", "ro", "--joined-dictionary",
       "--trainpref", f"{raw}/train.spm", "--validpref", f"{raw}/valid.spm", "--testpref", f"{raw}/test.spm",
       "--destdir", f"{WORK}/data-bin", "--workers", "2")


def train(name, updates, *extra, data="data-bin"):
    save = os.path.join(WORK, name)
    if not os.path.exists(os.path.join(save, "done")):
        sh("fairseq-train", f"{WORK}/{data}", "--user-dir", USER_DIR, "--save-dir", save,
           "--max-update", max(1, int(updates * SCALE)), *TRAIN, *extra)
        open(os.path.join(save, "done"), "w").close()
    return os.path.join(save, "checkpoint_last.pt")


def teacher_output(teacher):
    """Sequence-level KD data: the teacher's beam output for the train set (same dictionaries)."""
    if not os.path.exists(f"{WORK}/kd-bin/train.en-ro.ro.bin"):
        sh("fairseq-wd-distill-data", f"{WORK}/data-bin", "--user-dir", USER_DIR, "--path", teacher, "--cpu",
           "--dest", f"{WORK}/kd-bin", "--gen-subset", "train", "--beam", "4", "--batch-size", "128")
    return "kd-bin"


def weight_distillation(teacher, kd_bin, updates):
    phase1 = train("wd_phase1", updates // 2, *STUDENT, "--task", "weight_distillation", "--teacher-path", teacher,
                   "--extra-train-data", f"{WORK}/{kd_bin}", "--criterion", "weight_distillation")
    exported = os.path.join(WORK, "wd_phase1", "student.pt")
    if not os.path.exists(exported):
        sh("fairseq-wd-export", phase1, "--output", exported)
    return train("wd_phase2", updates // 2, *STUDENT, "--task", "distillation", "--extra-train-data",
                 f"{WORK}/{kd_bin}", "--finetune-from-model", exported, "--criterion", "label_smoothed_cross_entropy")


def evaluate(name, checkpoint):
    out = sh("fairseq-generate", f"{WORK}/data-bin", "--user-dir", USER_DIR, "--path", checkpoint, "--cpu",
             "--gen-subset", "test", "--beam", "4", "--batch-size", "64", "--remove-bpe", "sentencepiece", out=True)
    hyps = {int(m.group(1)): m.group(2) for m in re.finditer(r"^D-(\d+)\t\S+\t(.*)$", out, re.M)}
    refs = open(f"{WORK}/raw/test.ro", encoding="utf-8").read().splitlines()
    assert len(hyps) == len(refs), f"{name}: {len(hyps)} hypotheses for {len(refs)} test sentences"
    speed = float(re.search(r"\(([\d.]+) sentences/s", out).group(1))
    import sacrebleu
    bleu = sacrebleu.corpus_bleu([hyps[i] for i in range(len(refs))], [refs])
    return bleu.score, speed


def main():
    os.makedirs(WORK, exist_ok=True)
    prepare()
    teacher = train("teacher", 600, *TEACHER, "--criterion", "label_smoothed_cross_entropy")
    models = {
        "teacher (3-3, d128)": teacher,
        "TINY from scratch": train("tiny_scratch", 300, *STUDENT, "--criterion", "label_smoothed_cross_entropy"),
        "TINY + logit_kd": train("tiny_logit_kd", 300, *STUDENT, "--task", "distillation", "--teacher-path",
                                 teacher, "--criterion", "logit_kd", "--kd-alpha", "0.5"),
    }
    kd_bin = teacher_output(teacher)
    models["TINY + seq-KD (teacher output)"] = train("tiny_seqkd", 300, *STUDENT, "--criterion",
                                                     "label_smoothed_cross_entropy", data=kd_bin)
    models["TINY + pkd"] = train("tiny_pkd", 300, *STUDENT, "--task", "distillation", "--teacher-path", teacher,
                                 "--criterion", "pkd", "--kd-alpha", "0.5")
    models["TINY + WD (phase 1 + 2)"] = weight_distillation(teacher, kd_bin, 300)
    rows = [(name, *evaluate(name, ckpt)) for name, ckpt in models.items()]
    base_speed = rows[0][2]
    table = ["| model | BLEU | sentences/s | speed-up vs teacher |", "|---|---|---|---|"]
    table += [f"| {n} | {b:.2f} | {s:.1f} | {s / base_speed:.2f}x |" for n, b, s in rows]
    text = "\n".join(table)
    print(text)
    with open(os.path.join(WORK, "results.md"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
