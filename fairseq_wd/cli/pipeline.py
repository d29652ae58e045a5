"""`fairseq-wd-pipeline`: the paper's experiment in one command, on real text.

corpus split (or given valid/test sets, or a given data-bin) -> joint sentencepiece -> fairseq-preprocess -> teacher -> teacher output for the train
set (sequence-level KD data) -> the students of --methods, one architecture, all with the same number
of updates (default: the WD paper's KD baseline, i.e. the student trained on original + teacher
output, and Weight Distillation phase 1 + 2 on the same data) -> int8 CTranslate2 copies of the
teacher and of those two -> `fairseq-wd-bench` under one relative length limit -> learning curves
(valid BLEU against updates, from fairseq's --eval-bleu) and whether each valid loss stopped improving.

Each step is skipped when its output exists and is complete, so a killed run resumes where it
stopped (fairseq-train itself resumes from checkpoint_last.pt). The table is printed and saved to
WORK_DIR/results.md.

    fairseq-wd-pipeline                                   # = make demo: shipped corpus and teacher
    fairseq-wd-pipeline --methods all                     # + scratch, seq-KD, logit_kd, pkd, layer-copy, Pea-KD
    fairseq-wd-pipeline --budget cpu --work-dir runs/cpu  # a teacher and students trained to convergence (CPU)
    fairseq-wd-pipeline --budget full --fp16              # a bigger teacher, trained longer (GPU)
    fairseq-wd-pipeline --tsv my.de-en.tsv --source-lang de --target-lang en --work-dir runs/de-en
    fairseq-wd-pipeline --teacher ckpt.pt --teacher-dict dict.txt --teacher-spm spm.model ...
    fairseq-wd-pipeline --data-bin data-bin --teacher ckpt.pt --post-process subword_nmt --references test.en ...
"""
import argparse
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import torch

from ..checkpoints import DISK_ERRORS, CheckpointError, OutputError, load_state, model_args, save_plain_transformer
from ..deploy import ct2
from ..pipeline import corpus, curves
from ..pipeline.budgets import BUDGETS
from ..teacher import Teacher

# --methods, in table order, and the rows each adds: after the student's name, the training data and the loss.
METHODS = {
    "scratch": ["scratch (orig, CE)"],
    "seq-kd": ["seq-KD (teacher-out, CE)"],
    "kd": ["KD (orig+teacher-out, CE)"],
    "logit_kd": ["logit-KD (orig, CE+KL)"],
    "pkd": ["PKD (orig, CE+KL+hidden)"],
    "layer-copy": ["layer-copy init (orig, CE)"],
    "wd": ["WD (orig+teacher-out, generator then CE)"],
    "pea-kd": ["SPS (orig, CE+KL)", "PTP then logit-KD (orig, CE+KL)", "Pea-KD (orig, SPS+PTP then CE+KL+hidden)"],
}
DEFAULT_METHODS = "kd,wd"
LEGEND = ("Rows: orig = the original training pairs; teacher-out = the teacher's beam output for the same "
          "sources (sequence-level KD data); CE = label-smoothed cross-entropy; KL = word-level KD against the "
          "online teacher (alpha 0.5); hidden = Patient-KD's hidden-state term; WD = phase 1 (parameter "
          "generator) for half of the updates, then CE fine-tuning. KD is the WD paper's KD baseline: the same "
          "student on the same data as WD. Every student has the same number of updates.")
CT2_ROWS = ("kd", "wd")  # besides the teacher, the rows that also get an int8 CTranslate2 copy

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED_TEACHER = os.path.join(PACKAGE, "data", "demo_teacher")
BIN = os.path.dirname(sys.executable)
MAX_POSITIONS = 1024  # fairseq transformer's default --max-source/target-positions, which the budgets keep


def get_parser():
    p = argparse.ArgumentParser(prog="fairseq-wd-pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", default="runs/pipeline", help="everything is written here (default runs/pipeline)")
    p.add_argument("--budget", choices=sorted(BUDGETS), default="demo",
                   help="model sizes and update counts: demo (under 40 min on a 2-core CPU), cpu (the demo's models trained "
                        "to convergence, at most 150 min on a 2-core CPU) or full (GPU)")
    p.add_argument("--update-scale", type=float, default=1.0, help="multiplies every update count (e.g. 0.1 to try)")
    p.add_argument("--student", choices=["tiny", "small"], default="tiny",
                   help="student architecture: tiny (1 half-width decoder layer) or small (2 full-width)")
    data = p.add_argument_group("corpus (default: the shipped mpl.en-ro)")
    data.add_argument("--tsv", help="parallel text as 'source<TAB>target' lines (.xz/.gz allowed)")
    data.add_argument("--source-file", help="source side, line-aligned with --target-file")
    data.add_argument("--target-file", help="target side")
    data.add_argument("--source-lang", help="source language code (default: en, or the pair of --data-bin)")
    data.add_argument("--target-lang", help="target language code (default: ro, or the pair of --data-bin)")
    data.add_argument("--test-size", type=int, default=500,
                      help="test sentences cut from the corpus (seeded), before those whose source occurs in "
                           "train are removed (default 500)")
    data.add_argument("--valid-size", type=int, default=300, help="valid sentences cut likewise (default 300)")
    for split in ("valid", "test"):
        data.add_argument(f"--{split}-tsv", help=f"a given {split} set ('source<TAB>target' lines) instead of a cut")
        data.add_argument(f"--{split}-source", help=f"a given {split} set's source side, with --{split}-target")
        data.add_argument(f"--{split}-target", help=f"a given {split} set's target side (raw text: the references)")
    data.add_argument("--character-coverage", type=float,
                      help="sentencepiece's character coverage (default: 0.9995 when a side is zh or ja, else 1.0)")
    data.add_argument("--data-bin", help="an existing fairseq-preprocess output with train, valid and test splits "
                                         "instead of a corpus (use with --teacher and the --post-process it needs)")
    b = p.add_argument_group("benchmark")
    b.add_argument("--post-process", default="sentencepiece",
                   help="how the data's subwords are removed before BLEU, as fairseq-generate's --post-process: "
                        "sentencepiece (default), subword_nmt (BPE with @@), none")
    b.add_argument("--references", action="append", metavar="FILE",
                   help="detokenized test references, one line per test sentence; repeat for several (NIST). "
                        "Default: the test targets (raw text; for --data-bin, post-processed)")
    b.add_argument("--bleu-tokenize", help="sacrebleu's tokenizer (default: zh when the target is Chinese, else 13a)")
    b.add_argument("--bench-args", default="", help="more fairseq-wd-bench options, e.g. --bench-args=--lowercase")
    t = p.add_argument_group("teacher (default: trained here; the shipped one for demo on mpl.en-ro)")
    t.add_argument("--teacher", help="an existing teacher checkpoint instead of training one")
    t.add_argument("--teacher-dict", help="the (joined) dictionary the teacher was trained with "
                                          "(default: dict.txt next to --teacher)")
    t.add_argument("--teacher-spm", help="the sentencepiece model of the teacher's data (default: spm.model next to it)")
    t.add_argument("--train-teacher", action="store_true", help="train a teacher even where one is shipped")
    b.add_argument("--bench-repeats", type=int, help="timed decoding runs per model (default: the budget's)")
    p.add_argument("--methods", type=parse_methods, default=DEFAULT_METHODS,
                   help=f"comma-separated students to train, from {', '.join(METHODS)}, or all (default "
                        f"{DEFAULT_METHODS}: the WD paper's KD baseline and WD). pea-kd adds three students: "
                        "SPS + logit_kd, PTP then logit_kd, SPS + PTP then pkd")
    p.add_argument("--fp16", action="store_true", help="train with --fp16 (GPU)")
    p.add_argument("--train-args", default="", help="more fairseq-train options for every training, e.g. "
                                                    "--train-args='--max-tokens 8192 --num-workers 2' (they win "
                                                    "over the budget's)")
    p.add_argument("--teacher-args", default="", help="more fairseq-train options for the teacher trained here, e.g. "
                                                      "--teacher-args='--decoder-layers 6' (they win over the budget's)")
    p.add_argument("--wd-args", default="", help="more fairseq-train options for WD phase 1 only, e.g. "
                                                 "--wd-args=--wd-separate-transforms or '--wd-init truncated-identity'")
    p.add_argument("--pack-teacher", metavar="DIR", help="after training, write the teacher as a float16 "
                                                        "bundle (checkpoint.pt, dict.txt, spm.model) to DIR")
    return p


class Pipeline:
    def __init__(self, args):
        self.args = args
        self.budget = BUDGETS[args.budget]
        self.work = args.work_dir
        self.data_bin = args.data_bin or self.path("data-bin")
        self.src, self.tgt = self.languages()
        self.cpu = not torch.cuda.is_available()
        self.step_no = 0
        self.methods = args.methods
        self.student_encoder = self.budget.student_encoder  # then the teacher's encoder, once it exists
        self.logs = {}  # table row -> [(train.log, update offset)]

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def step(self, title):
        self.step_no += 1
        print(f"\n=== [{self.step_no}] {title} ({time.strftime('%H:%M:%S')}) ===", flush=True)

    def sh(self, *cmd, log=None):
        """Runs a command; with `log`, the command appends its output to that file itself (the learning
        curves: a kill of the pipeline loses none of it) and the pipeline shows it as it grows."""
        print("+", " ".join(map(str, cmd)), flush=True)
        exe = os.path.join(BIN, cmd[0])
        argv = [exe if os.path.exists(exe) else cmd[0], *map(str, cmd[1:])]
        if log is None:
            subprocess.run(argv, check=True)
            return
        with open(log, "ab") as out, open(log, "rb") as shown:
            shown.seek(0, os.SEEK_END)
            proc = subprocess.Popen(argv, stdout=out, env=dict(os.environ, PYTHONUNBUFFERED="1"))
            while proc.poll() is None:
                sys.stdout.buffer.write(shown.read())
                sys.stdout.flush()
                time.sleep(0.2)
            sys.stdout.buffer.write(shown.read())
            sys.stdout.flush()
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, argv)

    def updates(self, n):
        return max(1, int(n * self.args.update_scale))

    # -- input, checked before any long work -----------------------------------------------------------
    def languages(self):
        """(source, target): as given, else --data-bin's pair, else the shipped corpus's en-ro."""
        a = self.args
        if a.data_bin and not (a.source_lang and a.target_lang):
            pairs = sorted({f.split(".")[1] for f in glob.glob(os.path.join(a.data_bin, "train.*-*.*.idx"))
                            for f in [os.path.basename(f)]})
            if not pairs:
                raise corpus.CorpusError(f"--data-bin {a.data_bin}: no train.SRC-TGT.*.idx files; is it the output "
                                         "of fairseq-preprocess?")
            if len(pairs) > 1:
                raise corpus.CorpusError(f"--data-bin {a.data_bin} holds several language pairs ({', '.join(pairs)}): "
                                         "give --source-lang and --target-lang")
            return tuple(pairs[0].split("-"))
        return a.source_lang or "en", a.target_lang or "ro"

    def check_data_bin(self):
        a = self.args
        mixed = [o for o in ("tsv", "source_file", "target_file", *(f"{s}_{k}" for s in ("valid", "test")
                                                                    for k in ("tsv", "source", "target")))
                 if getattr(a, o)]
        if mixed:
            raise corpus.CorpusError(f"--data-bin is already binarized: drop --{mixed[0].replace('_', '-')}")
        needed = [f"dict.{lang}.txt" for lang in (self.src, self.tgt)] + [
            f"{split}.{self.src}-{self.tgt}.{lang}.{ext}" for split in corpus.SPLITS for lang in (self.src, self.tgt)
            for ext in ("bin", "idx")]
        missing = [f for f in needed if not os.path.isfile(os.path.join(self.data_bin, f))]
        if missing:
            raise corpus.CorpusError(f"--data-bin {self.data_bin} lacks {', '.join(missing[:4])}: binarize train, "
                                     "valid and test with fairseq-preprocess (--trainpref, --validpref, --testpref)")

    def teacher_bundle(self):
        """(checkpoint, dict, spm model) of a given or shipped teacher (dict and spm None with --data-bin),
        or None to train one; the checkpoint's embeddings checked against the dictionaries."""
        a = self.args
        if a.data_bin:
            self.check_data_bin()
            if not a.teacher:
                return None
            bundle = (a.teacher, None, None)
            dictionaries = [os.path.join(self.data_bin, f"dict.{lang}.txt") for lang in (self.src, self.tgt)]
        else:
            if a.teacher:
                folder = os.path.dirname(os.path.abspath(a.teacher))
                bundle = (a.teacher, a.teacher_dict or os.path.join(folder, "dict.txt"),
                          a.teacher_spm or os.path.join(folder, "spm.model"))
            elif a.train_teacher or a.tsv or a.source_file or a.budget != "demo":
                return None
            else:
                bundle = tuple(os.path.join(SHIPPED_TEACHER, f) for f in ("checkpoint.pt", "dict.txt", "spm.model"))
            for what, path in zip(("--teacher", "--teacher-dict", "--teacher-spm"), bundle):
                if not os.path.isfile(path):
                    raise CheckpointError(f"{what}: {path} not found. A given teacher needs the dictionary and the "
                                          "sentencepiece model its data was made with (--teacher-dict, --teacher-spm), "
                                          "or its binarized data (--data-bin).")
            dictionaries = [bundle[1], bundle[1]]
        from fairseq.data import Dictionary

        teacher = Teacher(bundle[0])  # read once for every check; not kept while the trainings run
        teacher.check_dictionaries(*(Dictionary.load(path) for path in dictionaries), names=dictionaries)
        self.given_teacher_layers, self.student_encoder = teacher.decoder_layers, teacher_encoder_flags(teacher)
        return bundle

    def check_wd_depths(self, bundle):
        """WD groups teacher layers per student layer: refuse a teacher whose decoder depth is no multiple
        of the student's before hours of teacher training and teacher output, not when phase 1 starts."""
        if "wd" not in self.methods:
            return
        if bundle:
            teacher = self.given_teacher_layers
        else:
            teacher = decoder_layers([*self.budget.teacher, *shlex.split(self.args.teacher_args)])
        student = STUDENT_DECODER_LAYERS[self.args.student]
        if teacher % student:
            raise CheckpointError(
                f"--methods wd with --student {self.args.student}: the teacher's decoder has {teacher} layers and "
                f"the student's {student}; Weight Distillation maps a group of teacher layers to each student layer, "
                f"so the teacher's depth must be a multiple of the student's. Use --student tiny, or a teacher with "
                f"{teacher + student - teacher % student} decoder layers (--teacher-args='--decoder-layers N' when "
                "it is trained here)")

    # -- data ------------------------------------------------------------------------------------------
    def prepare(self, bundle):
        a, raw = self.args, self.path("raw")
        self.step("corpus: split, sentencepiece, fairseq-preprocess")
        if a.data_bin:
            print("the given data-bin:", a.data_bin)
            return
        if os.path.exists(self.path("data-bin", "done")):
            print("done already:", self.data_bin)
            return
        if not (a.tsv or a.source_file) and (self.src, self.tgt) != ("en", "ro"):
            raise corpus.CorpusError("the shipped corpus is English-Romanian: keep --source-lang en --target-lang ro, "
                                     "or give your own with --tsv / --source-file --target-file")
        pairs = corpus.read_pairs(a.tsv, a.source_file, a.target_file)
        given = {name: corpus.read_pairs(getattr(a, f"{name}_tsv"), getattr(a, f"{name}_source"),
                                         getattr(a, f"{name}_target"))
                 for name in ("valid", "test") if any(getattr(a, f"{name}_{k}") for k in ("tsv", "source", "target"))}
        splits, removed = corpus.split(pairs, 0 if "test" in given else a.test_size,
                                       0 if "valid" in given else a.valid_size)
        splits.update(given)
        notes = [f"{name}: {len(rows)} pairs" + (f", {removed[name]} removed whose source occurs in train"
                                                 if removed.get(name) and name not in given else "")
                 for name, rows in splits.items()]
        notes += [f"given {name}: {n} pairs whose source occurs in train (kept)"
                  for name, n in corpus.without_train_sources(splits)[1].items() if name in given and n]
        print("\n".join(notes))
        corpus.write_splits(splits, raw, self.src, self.tgt)
        with open(os.path.join(raw, "splits.txt"), "w") as f:
            f.write("; ".join(notes) + "\n")
        if bundle:
            spm_model = self.path("spm.model")
            shutil.copy(bundle[2], spm_model)
        else:
            coverage = a.character_coverage or corpus.character_coverage(self.src, self.tgt)
            spm_model = corpus.train_sentencepiece(raw, self.src, self.tgt, self.path("spm"), self.budget.vocab_size,
                                                   coverage)
        corpus.encode(raw, self.src, self.tgt, spm_model, max_positions=MAX_POSITIONS)
        shutil.rmtree(self.data_bin, ignore_errors=True)
        self.sh("fairseq-preprocess", *corpus.preprocess_args(raw, self.src, self.tgt, self.data_bin,
                                                               bundle[1] if bundle else None))
        open(os.path.join(self.data_bin, "done"), "w").close()

    # -- training --------------------------------------------------------------------------------------
    def train(self, name, updates, *extra, data=None, row=None, offset=0):
        """fairseq-train into WORK_DIR/name (its output also in name/train.log); `row`: the table row
        whose learning curve this training is, starting `offset` updates into it."""
        save = self.path(name)
        if row:
            self.logs.setdefault(row, []).append((os.path.join(save, "train.log"), offset))
        if os.path.exists(os.path.join(save, "done")):
            print("done already:", save)
        else:
            os.makedirs(save, exist_ok=True)
            flags = [*self.budget.train, *self.budget.validation(self.args.post_process), *(["--cpu"] if self.cpu else []),
                     *(["--fp16"] if self.args.fp16 else []), *shlex.split(self.args.train_args)]
            self.sh("fairseq-train", data or self.data_bin, "--user-dir", PACKAGE, "--save-dir", save,
                    "--max-update", self.updates(updates), *flags, *extra, log=os.path.join(save, "train.log"))
            open(os.path.join(save, "done"), "w").close()
        return os.path.join(save, "checkpoint_best.pt")

    def criterion(self, name):
        smoothing = [] if name == "ptp" else ["--label-smoothing", str(self.budget.label_smoothing)]
        return ["--criterion", name, *smoothing]

    def teacher(self, bundle):
        self.step("teacher")
        if bundle:
            print("using teacher", bundle[0])
            return bundle[0]
        ckpt = self.train("teacher", self.budget.teacher_updates, *self.budget.teacher,
                          *self.criterion("label_smoothed_cross_entropy"), *shlex.split(self.args.teacher_args),
                          row="teacher")
        if self.args.pack_teacher:
            pack_teacher(ckpt, self.path("spm.model"), os.path.join(self.data_bin, f"dict.{self.src}.txt"),
                         self.args.pack_teacher)
        return ckpt

    def teacher_output(self, teacher):
        self.step("teacher output for the train set (sequence-level KD data)")
        kd_bin = self.path("kd-bin")
        if os.path.exists(os.path.join(kd_bin, "done")):  # written last: files that exist may be partial
            print("done already:", kd_bin)
        else:  # a rerun keeps the finished chunks
            self.sh("fairseq-wd-distill-data", self.data_bin, "--user-dir", PACKAGE, "--path", teacher,
                    *(["--cpu"] if self.cpu else []), "--dest", kd_bin, "--gen-subset", "train",
                    "--beam", self.budget.distill_beam, "--batch-size", "128")
            open(os.path.join(kd_bin, "done"), "w").close()
        return kd_bin

    def student_flags(self, family="wd_transformer"):
        return ["--arch", f"{family}_{self.args.student}", *self.student_encoder]

    def kd_flags(self, teacher):
        return ["--task", "distillation", "--teacher-path", teacher, "--kd-alpha", "0.5"]

    def row(self, method, i=0):
        """A table row's name: the student, the method, and what differs: its training data and loss."""
        return f"{self.args.student.upper()} {METHODS[method][i]}"

    def students(self, teacher, kd_bin):
        """The students of --methods, in the table's order, each with the same number of updates."""
        models = {}
        for method in self.methods:
            models.update(getattr(self, "student_" + method.replace("-", "_"))(teacher, kd_bin))
        return models

    def student(self, method, folder, *flags, data=None, note=""):
        """One student of the chosen architecture with the budget's updates: {row: checkpoint}."""
        row = self.row(method)
        self.step(row + note)
        return {row: self.train(folder, self.budget.student_updates, *self.student_flags(), *flags, data=data, row=row)}

    def student_scratch(self, teacher, kd_bin):
        return self.student("scratch", f"{self.args.student}_scratch", *self.criterion("label_smoothed_cross_entropy"))

    def student_seq_kd(self, teacher, kd_bin):
        return self.student("seq-kd", f"{self.args.student}_seqkd", *self.criterion("label_smoothed_cross_entropy"),
                            data=kd_bin)

    def student_kd(self, teacher, kd_bin):
        """The WD paper's KD baseline: the same student on WD's data (original + teacher output), same updates."""
        return self.student("kd", f"{self.args.student}_kd", "--task", "distillation", "--extra-train-data", kd_bin,
                            *self.criterion("label_smoothed_cross_entropy"), note=" (the WD paper's KD baseline)")

    def student_logit_kd(self, teacher, kd_bin=None):
        return self.student("logit_kd", f"{self.args.student}_logit_kd", *self.kd_flags(teacher),
                            *self.criterion("logit_kd"))

    def student_pkd(self, teacher, kd_bin):
        return self.student("pkd", f"{self.args.student}_pkd", *self.kd_flags(teacher), *self.criterion("pkd"))

    def student_layer_copy(self, teacher, kd_bin):
        if self.args.student != "small":
            print("skipped layer-copy: TINY's decoder is half the teacher's width, so teacher layers cannot be "
                  "copied (that is what Weight Distillation is for); use --student small")
            return {}
        init = self.path("small_layer_copy_init.pt")
        if not os.path.exists(init):
            self.sh("fairseq-wd-init-student", "--teacher-path", teacher, *self.student_flags(), "--output", init)
        return self.student("layer-copy", "small_layer_copy", *self.criterion("label_smoothed_cross_entropy"),
                            "--finetune-from-model", init)

    def student_wd(self, teacher, kd_bin):
        """Phase 1 (generator) for half of the updates, export, phase 2 (plain fine-tuning) for the rest;
        both on original + teacher output, as the authors' released recipe."""
        n, student, wd, row = self.budget.student_updates, self.student_flags(), ["--extra-train-data", kd_bin], self.row("wd")
        self.step(f"{row}: phase 1 (parameter generator)")
        phase1 = self.train("wd_phase1", n // 2, *student, "--task", "weight_distillation", "--teacher-path",
                            teacher, *self.criterion("weight_distillation"), *wd, *self.budget.wd_phase1,
                            *shlex.split(self.args.wd_args), row=row)
        exported = self.path("wd_phase1", "student.pt")
        if not os.path.exists(exported):
            self.sh("fairseq-wd-export", phase1, "--output", exported)
        self.step(f"{row}: phase 2 (fine-tuning)")
        return {row: self.train("wd_phase2", n - n // 2, *student, "--task", "distillation", *wd,
                                "--finetune-from-model", exported, *self.criterion("label_smoothed_cross_entropy"),
                                *self.budget.wd_phase2, row=row, offset=self.updates(n // 2))}

    def student_pea_kd(self, teacher, kd_bin=None):
        """Pea-KD's two parts on their own with logit_kd, and together with pkd as Pea-KD does: the same
        total updates as every student; PTP takes the first half (its curve is the KD half's)."""
        s, n = self.args.student, self.budget.student_updates
        plain, sps = self.student_flags(), [*self.student_flags("sps_transformer"), "--sps-reuse", self.budget.sps_reuse]
        kd = self.kd_flags(teacher)
        name = self.row("pea-kd", 0)
        self.step(f"{name} (--sps-reuse {self.budget.sps_reuse})")
        models = {name: self.train(f"{s}_sps_logit_kd", n, *sps, *kd, *self.criterion("logit_kd"), row=name)}
        for i, folder, arch, criterion in ((1, f"{s}_ptp_logit_kd", plain, "logit_kd"),
                                           (2, f"{s}_pea_kd", sps, "pkd")):
            name = self.row("pea-kd", i)
            self.step(f"{name}: pre-training on the teacher's predictions (PTP)")
            ptp = self.train(f"{folder}_ptp", n // 2, *arch, "--task", "distillation", "--teacher-path", teacher,
                             *self.criterion("ptp"))
            self.step(f"{name}: {criterion} from the PTP student")
            models[name] = self.train(folder, n - n // 2, *arch, *kd, *self.criterion(criterion),
                                      "--finetune-from-model", ptp, row=name, offset=self.updates(n // 2))
        return models

    def ctranslate2(self, models):
        """int8 CTranslate2 copies of the teacher and of the KD and WD students, for the same table."""
        self.step("CTranslate2 int8 export")
        try:
            ct2.require()
        except ct2.DeployError as e:
            print(f"skipped: {e}")
            return {}
        exported = {}
        for folder, name in [("teacher", "teacher"), *((m, self.row(m)) for m in CT2_ROWS if m in self.methods)]:
            out = self.path("ct2", folder)
            if not os.path.exists(out):  # written aside and renamed by the export: a folder that exists is whole
                self.sh("fairseq-wd-export", models[name], "--to", "ctranslate2", "--quantization", "int8",
                        "--data", self.data_bin, "--output", out)
            exported[f"{name}, CTranslate2 int8"] = out
        return exported

    def bench(self, models):
        """fairseq-wd-bench of every row under one length limit: its table (bench/bench.md)."""
        self.step("fairseq-wd-bench: BLEU and decoding speed")
        out = self.path("bench")
        if bench_models(out) == list(models) and os.path.exists(os.path.join(out, "bench.md")):
            print("done already:", os.path.join(out, "bench.md"))
        else:
            references = self.args.references or ([] if self.args.data_bin else [self.path("raw", f"test.{self.tgt}")])
            self.sh("fairseq-wd-bench", self.data_bin, *[f"--model={n}={p}" for n, p in models.items()],
                    *[f"--references={r}" for r in references], "--post-process", self.args.post_process,
                    "--tokenize", self.bleu_tokenize(), *shlex.split(self.args.bench_args),
                    "--repeats", self.args.bench_repeats or self.budget.bench_repeats,
                    "--max-len-a", self.budget.max_len_a, "--max-len-b", self.budget.max_len_b,
                    "--output-dir", out, *(["--cpu"] if self.cpu else []))
        with open(os.path.join(out, "bench.md")) as f:
            return f.read()

    def bleu_tokenize(self):
        return self.args.bleu_tokenize or ("zh" if self.tgt.split("_")[0].lower() == "zh" else "13a")

    def valid_bleu(self, checkpoint):
        """The teacher's BLEU on valid, decoded as fairseq's --eval-bleu decodes the students' curves."""
        proc = subprocess.run([os.path.join(BIN, "fairseq-generate"), self.data_bin, "--user-dir", PACKAGE,
                               "--path", checkpoint, "--gen-subset", "valid", "--beam", "4", "--batch-size", "128",
                               "--max-len-a", str(self.budget.max_len_a), "--max-len-b", str(self.budget.max_len_b),
                               "--post-process", self.args.post_process, "--scoring", "sacrebleu",
                               *(["--cpu"] if self.cpu else [])], capture_output=True, text=True, check=True)
        return float(re.search(r"BLEU = ([\d.]+)", proc.stdout).group(1))

    def learning_curves(self, teacher):
        """Valid BLEU against updates of every training (plot next to bench.png), and how each valid loss
        ended: a markdown table for results.md."""
        self.step("learning curves (valid BLEU and loss against updates)")
        found = {row: [p for log, offset in logs if os.path.exists(log) for p in curves.read_validations(log, offset)]
                 for row, logs in self.logs.items()}
        teacher_bleu = self.valid_bleu(teacher)
        os.makedirs(self.path("bench"), exist_ok=True)
        curves.plot(found, self.path("bench", "curves.png"),
                    {f"teacher {teacher_bleu:.1f}": teacher_bleu, "75% of the teacher": 0.75 * teacher_bleu})
        with open(self.path("bench", "curves.json"), "w") as f:
            json.dump({"teacher_valid_bleu": teacher_bleu, "curves": found}, f, indent=1)
        lines = [f"Learning curves on valid (fairseq --eval-bleu, beam 4; the teacher: {teacher_bleu:.2f} BLEU), "
                 "bench/curves.png:", "",
                 "| model | updates | valid BLEU at the end | best valid BLEU (update) | best valid loss at update | "
                 "loss stopped improving |", "|---|---|---|---|---|---|"]
        for row, points in found.items():
            with_bleu = [p for p in points if "bleu" in p]
            if not with_bleu:
                continue
            end, best = with_bleu[-1], max(with_bleu, key=lambda p: p["bleu"])
            convergence = curves.convergence(points, self.budget.converged_share * end["update"])
            lines.append(f"| {row} | {end['update']} | {end['bleu']:.2f} | {best['bleu']:.2f} ({best['update']}) | "
                         f"{convergence['best_update']} | {'yes' if convergence['converged'] else 'no'} |")
        return "\n".join(lines) + "\n"

    def run(self):
        os.makedirs(self.work, exist_ok=True)
        started = time.time()
        bundle = self.teacher_bundle()
        self.check_wd_depths(bundle)
        self.prepare(bundle)
        teacher = self.teacher(bundle)
        if not bundle:  # a given teacher's encoder was read with its checks
            self.student_encoder = teacher_encoder_flags(Teacher(teacher))
        kd_bin = self.teacher_output(teacher)
        models = {"teacher": teacher, **self.students(teacher, kd_bin)}
        models.update(self.ctranslate2(models))
        report = f"{self.bench(models)}\n{LEGEND}\n\n{self.learning_curves(teacher)}"
        if os.path.exists(self.path("raw", "splits.txt")):
            with open(self.path("raw", "splits.txt")) as f:
                report += f"\nData: {f.read()}"
        with open(self.path("results.md"), "w") as f:
            f.write(report)
        print(f"\n{report}\nsaved to {self.path('results.md')}; pipeline took {(time.time() - started) / 60:.1f} min")


STUDENT_DECODER_LAYERS = {"tiny": 1, "small": 2}


# what a student keeps of its teacher: the encoder, the heads, where LayerNorms sit, the activation
KEPT = ("encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_layers", "encoder_attention_heads",
        "decoder_attention_heads", "activation_fn")
KEPT_SWITCHES = ("encoder_normalize_before", "decoder_normalize_before", "share_decoder_input_output_embed")


def teacher_encoder_flags(teacher):
    """fairseq-train flags that give a student its teacher's encoder (a given teacher of any size)."""
    args = teacher.args
    return ([f"--{k.replace('_', '-')}={getattr(args, k)}" for k in KEPT if getattr(args, k, None) is not None]
            + [f"--{k.replace('_', '-')}" for k in KEPT_SWITCHES if getattr(args, k, False)])


def decoder_layers(flags):
    """The decoder depth that fairseq-train flags give (the last --decoder-layers wins; 6 by default)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--decoder-layers", type=int, default=6)
    return parser.parse_known_args(flags)[0].decoder_layers


def parse_methods(spec):
    chosen = list(METHODS) if spec.strip() == "all" else [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"--methods {spec!r}: unknown {unknown}; choose from {', '.join(METHODS)} "
                                         "or all")
    return [m for m in METHODS if m in chosen]  # the table's order


def bench_models(out):
    try:
        with open(os.path.join(out, "bench.json")) as f:
            return [m["name"] for m in json.load(f)["models"]]
    except (OSError, ValueError, KeyError):
        return None


def pack_teacher(checkpoint, spm_model, dictionary, out_dir):
    """A shippable teacher: float16 weights of a plain `transformer`, its dictionary and sentencepiece model."""
    os.makedirs(out_dir, exist_ok=True)
    state = load_state(checkpoint, "teacher checkpoint")
    save_plain_transformer(os.path.join(out_dir, "checkpoint.pt"), state["model"], model_args(state),
                           dtype=torch.float16)
    if os.path.exists(spm_model):  # none with --data-bin
        shutil.copy(spm_model, os.path.join(out_dir, "spm.model"))
    shutil.copy(dictionary, os.path.join(out_dir, "dict.txt"))


def main(argv=None):
    args = get_parser().parse_args(argv)
    try:
        Pipeline(args).run()
    except (CheckpointError, corpus.CorpusError, OutputError) as e:
        sys.exit(f"fairseq-wd-pipeline: error: {e}")
    except OSError as e:
        if e.errno not in DISK_ERRORS:
            raise
        sys.exit(f"fairseq-wd-pipeline: error: {e}. Free disk space or fix the permissions, then rerun the same "
                 "command: finished steps are skipped")
    except subprocess.CalledProcessError as e:
        sys.exit(f"fairseq-wd-pipeline: step failed ({' '.join(map(str, e.cmd[:2]))} ...); "
                 "fix the cause and rerun the same command: finished steps are skipped")


if __name__ == "__main__":
    main()
