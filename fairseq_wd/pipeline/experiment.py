"""The experiment that `fairseq-wd-pipeline` runs (its steps: the command's help): data, teacher,
teacher output, the students of --methods under one recipe, CTranslate2 copies, the bench, the
learning curves. Each step is skipped once done, so a killed run resumes."""
import json
import os
import re
import shlex
import shutil
import subprocess
import time

import torch

from ..checkpoints import load_state, model_args, save_plain_transformer
from ..deploy import ct2
from ..recipes import RECIPES
from ..teacher import Teacher
from . import corpus, curves, inputs
from .inputs import PACKAGE
from .steps import BIN, StepRunner

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
          "online teacher (alpha {kd_alpha}); hidden = Patient-KD's hidden-state term; WD = phase 1 (parameter "
          "generator) for half of the updates, then CE fine-tuning. KD is the WD paper's KD baseline: the same "
          "student on the same data as WD. Every student has the same number of updates.")
CT2_ROWS = ("kd", "wd")  # besides the teacher, the rows that also get an int8 CTranslate2 copy

MAX_POSITIONS = 1024  # fairseq transformer's default --max-source/target-positions, which the recipes keep


class Pipeline(StepRunner):
    """The experiment of `fairseq-wd-pipeline`, from its parsed options."""

    def __init__(self, args):
        super().__init__(args.work_dir)
        self.args = args
        self.recipe = RECIPES[args.budget]
        self.data_bin = args.data_bin or self.path("data-bin")
        self.src, self.tgt = inputs.languages(args)
        self.cpu = not torch.cuda.is_available()
        self.methods = args.methods
        self.student_encoder = self.recipe.student_encoder  # then the teacher's encoder, once it exists
        self.logs = {}  # table row -> [(train.log, update offset)]

    def updates(self, n):
        return max(1, int(n * self.args.update_scale))

    # -- data ------------------------------------------------------------------------------------------
    def prepare(self, teacher):
        """`teacher`: a GivenTeacher, whose sentencepiece model and dictionary the data must use, or None."""
        a, raw = self.args, self.path("raw")
        self.step("corpus: split, sentencepiece, fairseq-preprocess")
        if a.data_bin:
            print("the given data-bin:", a.data_bin)
            return
        if self.is_done(self.data_bin):
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
        if teacher:
            spm_model = self.path("spm.model")
            shutil.copy(teacher.spm, spm_model)
        else:
            coverage = a.character_coverage or corpus.character_coverage(self.src, self.tgt)
            spm_model = corpus.train_sentencepiece(raw, self.src, self.tgt, self.path("spm"), self.recipe.vocab_size,
                                                   coverage)
        corpus.encode(raw, self.src, self.tgt, spm_model, max_positions=MAX_POSITIONS)
        shutil.rmtree(self.data_bin, ignore_errors=True)
        self.sh("fairseq-preprocess", *corpus.preprocess_args(raw, self.src, self.tgt, self.data_bin,
                                                               teacher.dictionary if teacher else None))
        self.mark_done(self.data_bin)

    # -- training --------------------------------------------------------------------------------------
    def train(self, name, updates, *extra, data=None, row=None, offset=0):
        """fairseq-train into WORK_DIR/name (its output also in name/train.log); `row`: the table row
        whose learning curve this training is, starting `offset` updates into it."""
        save = self.path(name)
        if row:
            self.logs.setdefault(row, []).append((os.path.join(save, "train.log"), offset))
        if not self.is_done(save):
            os.makedirs(save, exist_ok=True)
            flags = [*self.recipe.train, *self.recipe.validation(self.args.post_process), *(["--cpu"] if self.cpu else []),
                     *(["--fp16"] if self.args.fp16 else []), *shlex.split(self.args.train_args)]
            self.sh("fairseq-train", data or self.data_bin, "--user-dir", PACKAGE, "--save-dir", save,
                    "--max-update", self.updates(updates), *flags, *extra, log=os.path.join(save, "train.log"))
            self.mark_done(save)
        return os.path.join(save, "checkpoint_best.pt")

    def criterion(self, name):
        smoothing = [] if name == "ptp" else ["--label-smoothing", str(self.recipe.label_smoothing)]
        return ["--criterion", name, *smoothing]

    def teacher(self, given):
        self.step("teacher")
        if given:
            print("using teacher", given.checkpoint)
            return given.checkpoint
        ckpt = self.train("teacher", self.recipe.teacher_updates, *self.recipe.teacher,
                          *self.criterion("label_smoothed_cross_entropy"), *shlex.split(self.args.teacher_args),
                          row="teacher")
        if self.recipe.average_last:  # the paper's teacher: its last epoch checkpoints averaged
            averaged = self.path("teacher", f"checkpoint.avg{self.recipe.average_last}.pt")
            if not os.path.exists(averaged):  # written whole or not at all
                self.sh("fairseq-wd-average-checkpoints", "--inputs", self.path("teacher"), "--num-epoch-checkpoints",
                        self.recipe.average_last, "--output", averaged)
            ckpt = averaged
        if self.args.pack_teacher:
            pack_teacher(ckpt, self.path("spm.model"), os.path.join(self.data_bin, f"dict.{self.src}.txt"),
                         self.args.pack_teacher)
        return ckpt

    def teacher_output(self, teacher):
        self.step("teacher output for the train set (sequence-level KD data)")
        kd_bin = self.path("kd-bin")
        if not self.is_done(kd_bin):  # a rerun keeps the finished chunks
            self.sh("fairseq-wd-distill-data", self.data_bin, "--user-dir", PACKAGE, "--path", teacher,
                    *(["--cpu"] if self.cpu else []), "--dest", kd_bin, "--gen-subset", "train",
                    *self.recipe.distill)
            self.mark_done(kd_bin)
        return kd_bin

    def student_flags(self, family="wd_transformer"):
        return ["--arch", f"{family}_{self.args.student}", *self.student_encoder]

    def kd_flags(self, teacher):
        return ["--task", "distillation", "--teacher-path", teacher, "--kd-alpha", str(self.recipe.kd_alpha)]

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
        """One student of the chosen architecture with the recipe's updates: {row: checkpoint}."""
        row = self.row(method)
        self.step(row + note)
        return {row: self.train(folder, self.recipe.student_updates, *self.student_flags(), *flags, data=data, row=row)}

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
        (n1, n2), student, wd, row = self.recipe.wd_phase_updates(), self.student_flags(), ["--extra-train-data", kd_bin], self.row("wd")
        self.step(f"{row}: phase 1 (parameter generator)")
        phase1 = self.train("wd_phase1", n1, *student, "--task", "weight_distillation", "--teacher-path",
                            teacher, *self.criterion("weight_distillation"), *wd, *self.recipe.wd_phase1,
                            *shlex.split(self.args.wd_args), row=row)
        exported = self.path("wd_phase1", "student.pt")
        if not os.path.exists(exported):
            self.sh("fairseq-wd-export", phase1, "--output", exported)
        self.step(f"{row}: phase 2 (fine-tuning)")
        return {row: self.train("wd_phase2", n2, *student, "--task", "distillation", *wd,
                                "--finetune-from-model", exported, *self.criterion("label_smoothed_cross_entropy"),
                                *self.recipe.wd_phase2, row=row, offset=self.updates(n1))}

    def student_pea_kd(self, teacher, kd_bin=None):
        """Pea-KD's two parts on their own with logit_kd, and together with pkd as Pea-KD does: the same
        total updates as every student; PTP takes the first half (its curve is the KD half's)."""
        s, n = self.args.student, self.recipe.student_updates
        plain, sps = self.student_flags(), [*self.student_flags("sps_transformer"), "--sps-reuse", self.recipe.sps_reuse]
        kd = self.kd_flags(teacher)
        name = self.row("pea-kd", 0)
        self.step(f"{name} (--sps-reuse {self.recipe.sps_reuse})")
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
                    "--repeats", self.args.bench_repeats or self.recipe.bench_repeats,
                    "--max-len-a", self.recipe.max_len_a, "--max-len-b", self.recipe.max_len_b,
                    "--output-dir", out, *(["--cpu"] if self.cpu else []))
        with open(os.path.join(out, "bench.md")) as f:
            return f.read()

    def bleu_tokenize(self):
        return self.args.bleu_tokenize or ("zh" if self.tgt.split("_")[0].lower() == "zh" else "13a")

    def valid_bleu(self, checkpoint):
        """The teacher's BLEU on valid, decoded as fairseq's --eval-bleu decodes the students' curves."""
        proc = subprocess.run([os.path.join(BIN, "fairseq-generate"), self.data_bin, "--user-dir", PACKAGE,
                               "--path", checkpoint, "--gen-subset", "valid", "--beam", "4", "--batch-size", "128",
                               "--max-len-a", str(self.recipe.max_len_a), "--max-len-b", str(self.recipe.max_len_b),
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
            convergence = curves.convergence(points, self.recipe.converged_share * end["update"])
            lines.append(f"| {row} | {end['update']} | {end['bleu']:.2f} | {best['bleu']:.2f} ({best['update']}) | "
                         f"{convergence['best_update']} | {'yes' if convergence['converged'] else 'no'} |")
        return "\n".join(lines) + "\n"

    def data_and_teacher(self):
        """The inputs checked, the data made and the teacher given or trained: its checkpoint. The
        students then get its encoder."""
        given = inputs.given_teacher(self.args, self.src, self.tgt)
        inputs.check_wd_depths(self.args, given, self.recipe.teacher)
        self.prepare(given)
        teacher = self.teacher(given)
        self.student_encoder = given.encoder_flags if given else inputs.teacher_encoder_flags(Teacher(teacher))
        return teacher

    def run(self):
        os.makedirs(self.work, exist_ok=True)
        started = time.time()
        teacher = self.data_and_teacher()
        kd_bin = self.teacher_output(teacher)
        models = {"teacher": teacher, **self.students(teacher, kd_bin)}
        models.update(self.ctranslate2(models))
        report = f"{self.bench(models)}\n{LEGEND.format(kd_alpha=self.recipe.kd_alpha)}\n\n{self.learning_curves(teacher)}"
        if os.path.exists(self.path("raw", "splits.txt")):
            with open(self.path("raw", "splits.txt")) as f:
                report += f"\nData: {f.read()}"
        with open(self.path("results.md"), "w") as f:
            f.write(report)
        print(f"\n{report}\nsaved to {self.path('results.md')}; pipeline took {(time.time() - started) / 60:.1f} min")


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
