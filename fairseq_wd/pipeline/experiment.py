"""The experiment that `fairseq-wd-pipeline` runs (its steps: the command's help): data, teacher,
teacher output, the students of --methods under one recipe (once per --seeds), CTranslate2 copies,
the bench, the learning curves. Each step is keyed by what made it (steps.py): skipped once done for
the same key, redone with what follows it when the key changed, resumed when it was killed."""
import argparse
import json
import os
import re
import shlex
import shutil
import time

from dataclasses import replace

import torch

from .. import early_stopping
from ..bench import results
from ..checkpoints import load_state, model_args, save_plain_transformer
from ..export import ct2
from ..recipes import RECIPES
from ..teacher.checkpoint import Teacher
from . import allocator, corpus, curves, inputs, jobs, steps
from .inputs import PACKAGE
from .steps import StepRunner

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
CT2_TYPES = ("int8", "float32")  # the compute types each CTranslate2 copy is benched at (bench --ct2-compute-type)

MAX_POSITIONS = 1024  # fairseq transformer's default --max-source/target-positions, which the recipes keep


class Pipeline(StepRunner):
    """The experiment of `fairseq-wd-pipeline`, from its parsed options."""

    def __init__(self, args):
        super().__init__(args.work_dir, redo=args.redo, jobs=args.jobs)
        self.args = args
        self.recipe = RECIPES[args.budget]
        if args.patience is not None:
            self.recipe = replace(self.recipe, patience=args.patience,
                                  validate_interval_updates=self.recipe.validate_interval_updates or 250)
        self.seeds = args.seeds
        self.data_bin = os.path.abspath(args.data_bin) if args.data_bin else self.path("data-bin")
        self.src, self.tgt = inputs.languages(args)
        self.cpu = not torch.cuda.is_available()
        self.methods = args.methods
        self.student_encoder = self.recipe.student_encoder  # then the teacher's encoder, once it exists
        self.logs = {}  # (table row, seed) -> [(train.log, update offset)]
        self.trainings = []  # (what, folder, --max-update) of every training, for the stopping table
        self.job_of = {}  # training folder -> the --jobs job that trained it (None: the pipeline itself)

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
        given_files = [getattr(a, f"{name}_{k}") for name in ("valid", "test") for k in ("tsv", "source", "target")]
        sources = [a.tsv or (None if a.source_file else corpus.SHIPPED), a.source_file, a.target_file, *given_files,
                   *((teacher.spm, teacher.dictionary) if teacher else ())]
        settings = {"languages": [self.src, self.tgt], "test_size": a.test_size, "valid_size": a.valid_size,
                    "vocab_size": self.recipe.vocab_size, "character_coverage": a.character_coverage,
                    "given": [bool(f) for f in given_files], "teacher_vocabulary": bool(teacher),
                    "max_positions": MAX_POSITIONS}
        # not taken back from stale/: raw/ and spm.model, written beside data-bin, would not come with it
        if self.begin(self.data_bin, settings, {self.portable(f): self.key_of(f) for f in sources if f}, restore=False):
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
            sides = [os.path.join(raw, f"train.{lang}") for lang in (self.src, self.tgt)]
            spm_model = corpus.train_sentencepiece(sides, self.path("spm"), self.recipe.vocab_size, coverage)
        corpus.encode(raw, self.src, self.tgt, spm_model, max_positions=MAX_POSITIONS)
        shutil.rmtree(self.data_bin, ignore_errors=True)
        self.sh("fairseq-preprocess", *corpus.preprocess_args(raw, self.src, self.tgt, self.data_bin,
                                                               teacher.dictionary if teacher else None))
        self.finish(self.data_bin)

    # -- training --------------------------------------------------------------------------------------
    def train(self, name, updates, *extra, data=None, row=None, offset=0, seed=None):
        """fairseq-train into WORK_DIR/name (its output also in name/train.log); `row`: the table row
        whose learning curve this training is, starting `offset` updates into it; `seed`: the student's
        (the recipe's otherwise)."""
        save = self.path(name)
        if row:
            self.logs.setdefault((row, seed), []).append((os.path.join(save, "train.log"), offset))
        self.trainings.append((name, save, self.updates(updates)))
        self.job_of[save] = jobs.current()
        flags = [*self.recipe.train, *self.validation(), *(["--cpu"] if self.cpu else []),
                 *(["--fp16"] if self.args.fp16 else []), *self.recipe.stopping(self.args.update_scale),
                 *shlex.split(self.args.train_args)]
        cmd = ["fairseq-train", data or self.data_bin, "--user-dir", PACKAGE, "--save-dir", save,
               "--max-update", self.updates(updates), *flags, *(["--seed", seed] if seed else []), *extra]
        if not self.begin(save, cmd):
            os.makedirs(save, exist_ok=True)
            self.sh(*cmd, log=os.path.join(save, "train.log"),
                    env=allocator.training_environment() if self.cpu else None)
            self.finish(save)
        return os.path.join(save, "checkpoint_best.pt")

    def validation(self):
        """fairseq-train flags of every training's validation: the valid BLEU of the learning curves."""
        return self.recipe.validation(self.args.post_process, self.args.select_by)

    def task(self, name):
        """fairseq flags of the task `name` (translation, or the plugin's distillation, weight_distillation):
        translation is fairseq-train's default."""
        return [] if name == "translation" else ["--task", name]

    def ended_at(self, name, updates):
        """The update a finished training stopped at (early, under --patience; else its cap): where the
        curve of the training that continues it starts."""
        return early_stopping.stopped(self.path(name, "train.log"), self.updates(updates))["update"] or self.updates(updates)

    def criterion(self, name):
        smoothing = [] if name == "ptp" else ["--label-smoothing", str(self.recipe.label_smoothing)]
        return ["--criterion", name, *smoothing]

    def teacher(self, given):
        self.step("teacher")
        if given:
            print("using teacher", given.checkpoint)
            return given.checkpoint
        ckpt = self.train("teacher", self.recipe.teacher_updates, *self.task("translation"), *self.teacher_flags(),
                          *self.recipe.teacher,
                          *self.criterion("label_smoothed_cross_entropy"), *shlex.split(self.args.teacher_args),
                          row="teacher")
        if self.recipe.average_last:  # the paper's teacher: its last epoch checkpoints averaged
            ckpt = self.keyed(self.path("teacher", f"checkpoint.avg{self.recipe.average_last}.pt"),
                              "fairseq-wd-average-checkpoints", "--inputs", self.path("teacher"),
                              "--num-epoch-checkpoints", self.recipe.average_last, "--output",
                              self.path("teacher", f"checkpoint.avg{self.recipe.average_last}.pt"), whole=True)
        if self.args.pack_teacher:
            pack_teacher(ckpt, self.path("spm.model"), os.path.join(self.data_bin, f"dict.{self.src}.txt"),
                         self.args.pack_teacher)
        return ckpt

    def teacher_flags(self):
        """What the teacher trained here adds to the recipe's architecture."""
        return []

    def teacher_output(self, teacher):
        self.step("teacher output for the train set (sequence-level KD data)")
        kd_bin = self.path("kd-bin")  # a resumed run keeps the finished chunks
        return self.keyed(kd_bin, "fairseq-wd-distill-data", self.data_bin, "--user-dir", PACKAGE, "--path", teacher,
                          *self.task("translation"), *(["--cpu"] if self.cpu else []),
                          *(["--fp16"] if self.args.fp16 else []), "--dest", kd_bin,
                          "--gen-subset", "train",
                          *self.recipe.distill)

    def shortlist(self, kd_bin):
        """A lexical shortlist (vmap.txt) from the teacher output, for the bench's shortlist rows."""
        self.step("vocabulary shortlist from the teacher output (fairseq-wd-shortlist)")
        os.makedirs(self.path("shortlist"), exist_ok=True)
        vmap = self.path("shortlist", "vmap.txt")
        return self.keyed(vmap, "fairseq-wd-shortlist", self.data_bin, "--train-data", kd_bin, "--output", vmap,
                          whole=True)

    def student_flags(self, family="wd_transformer"):
        return ["--arch", f"{family}_{self.args.student}", *self.student_encoder]

    def kd_flags(self, teacher):
        return [*self.task("distillation"), "--teacher-path", teacher, "--kd-alpha", str(self.recipe.kd_alpha)]

    def row(self, method, i=0):
        """A table row's name: the student, the method, and what differs: its training data and loss."""
        return f"{self.args.student.upper()} {METHODS[method][i]}"

    def students(self, teacher, kd_bin):
        """The students of --methods, in the table's order, each with the same number of updates, once
        per seed: {row: [checkpoint of each seed]}. They depend on nothing but the teacher and its output,
        so --jobs N trains N of them at once (jobs.py): the same steps, keys and tables as one at a time."""
        runs = [(method, seed) for method in self.methods for seed in self.seeds]
        models = {}
        for found in jobs.run_all(self, runs, lambda method, seed: getattr(
                self, "student_" + method.replace("-", "_"))(teacher, kd_bin, seed), self.args.jobs):
            for row, checkpoint in found.items():
                models.setdefault(row, []).append(checkpoint)
        return models

    def folder(self, method, seed):
        """A student's folder: its size, its method and its seed."""
        return f"{self.args.student}_{method}_seed{seed}"

    def student(self, method, seed, *flags, data=None, note="", folder=None):
        """One student of the chosen architecture with the recipe's updates: {row: checkpoint}."""
        row = self.row(method)
        self.step(f"{row}{note}, seed {seed}")
        return {row: self.train(folder or self.folder(method.replace("-", "_"), seed), self.recipe.student_updates,
                                *self.student_flags(), *flags, data=data, row=row, seed=seed)}

    def student_scratch(self, teacher, kd_bin, seed):
        return self.student("scratch", seed, *self.criterion("label_smoothed_cross_entropy"))

    def student_seq_kd(self, teacher, kd_bin, seed):
        return self.student("seq-kd", seed, *self.criterion("label_smoothed_cross_entropy"), data=kd_bin)

    def student_kd(self, teacher, kd_bin, seed):
        """The WD paper's KD baseline: the same student on WD's data (original + teacher output), same updates."""
        return self.student("kd", seed, *self.task("distillation"), "--extra-train-data", kd_bin,
                            *self.criterion("label_smoothed_cross_entropy"), note=" (the WD paper's KD baseline)")

    def student_logit_kd(self, teacher, kd_bin, seed):
        return self.student("logit_kd", seed, *self.kd_flags(teacher), *self.criterion("logit_kd"))

    def student_pkd(self, teacher, kd_bin, seed):
        return self.student("pkd", seed, *self.kd_flags(teacher), *self.criterion("pkd"))

    def student_layer_copy(self, teacher, kd_bin, seed):
        if self.args.student != "small":
            if seed == self.seeds[0]:
                print("skipped layer-copy: TINY's decoder is half the teacher's width, so teacher layers cannot be "
                      "copied (that is what Weight Distillation is for); use --student small")
            return {}
        init = self.path("small_layer_copy_init.pt")
        self.keyed(init, "fairseq-wd-init-student", "--teacher-path", teacher, *self.student_flags(), "--output", init,
                   whole=True)
        return self.student("layer-copy", seed, *self.criterion("label_smoothed_cross_entropy"),
                            "--finetune-from-model", init)

    def student_wd(self, teacher, kd_bin, seed):
        """Phase 1 (generator) for half of the updates, export, phase 2 (plain fine-tuning) for the rest;
        both on original + teacher output, as the authors' released recipe."""
        (n1, n2), student, wd, row = self.recipe.wd_phase_updates(), self.student_flags(), ["--extra-train-data", kd_bin], self.row("wd")
        phase1_dir = self.folder("wd_phase1", seed)
        self.step(f"{row}: phase 1 (parameter generator), seed {seed}")
        phase1 = self.train(phase1_dir, n1, *student, *self.task("weight_distillation"), "--teacher-path",
                            teacher, *self.criterion("weight_distillation"), *wd, *self.recipe.wd_phase1,
                            *shlex.split(self.args.wd_args), row=row, seed=seed)
        exported = self.path(phase1_dir, "student.pt")
        self.keyed(exported, "fairseq-wd-export", phase1, "--output", exported, whole=True)
        self.step(f"{row}: phase 2 (fine-tuning), seed {seed}")
        return {row: self.train(self.folder("wd_phase2", seed), n2, *student, *self.task("distillation"), *wd,
                                "--finetune-from-model", exported, *self.criterion("label_smoothed_cross_entropy"),
                                *self.recipe.wd_phase2, row=row, offset=self.ended_at(phase1_dir, n1), seed=seed)}

    def student_pea_kd(self, teacher, kd_bin, seed):
        """Pea-KD's two parts on their own with logit_kd, and together with pkd as Pea-KD does: the same
        total updates as every student; PTP takes the first half (its curve is the KD half's)."""
        n = self.recipe.student_updates
        plain, sps = self.student_flags(), [*self.student_flags("sps_transformer"), "--sps-reuse", self.recipe.sps_reuse]
        kd = self.kd_flags(teacher)
        name = self.row("pea-kd", 0)
        self.step(f"{name} (--sps-reuse {self.recipe.sps_reuse}), seed {seed}")
        models = {name: self.train(self.folder("sps_logit_kd", seed), n, *sps, *kd, *self.criterion("logit_kd"),
                                   row=name, seed=seed)}
        for i, method, arch, criterion in ((1, "ptp_logit_kd", plain, "logit_kd"), (2, "pea_kd", sps, "pkd")):
            name = self.row("pea-kd", i)
            self.step(f"{name}: pre-training on the teacher's predictions (PTP), seed {seed}")
            ptp_dir = self.folder(f"{method}_ptp", seed)
            ptp = self.train(ptp_dir, n // 2, *arch, *self.task("distillation"),
                             "--teacher-path", teacher, *self.criterion("ptp"), seed=seed)
            self.step(f"{name}: {criterion} from the PTP student, seed {seed}")
            models[name] = self.train(self.folder(method, seed), n - n // 2, *arch, *kd, *self.criterion(criterion),
                                      "--finetune-from-model", ptp, row=name, offset=self.ended_at(ptp_dir, n // 2), seed=seed)
        return models

    def shipped(self, models):
        """Each student as the file a user ships (fairseq-wd-export): weights and a plain config, loadable by
        vanilla fairseq and ct2-fairseq-converter without the plugin: WORK/students/<its training>.pt."""
        self.step("the students to ship (fairseq-wd-export: weights and a plain config)")
        os.makedirs(self.path("students"), exist_ok=True)
        shipped = {}
        for name, checkpoints in models.items():
            for checkpoint in checkpoints if name != "teacher" else ():
                out = self.path("students", os.path.basename(os.path.dirname(checkpoint)) + ".pt")
                shipped.setdefault(name, []).append(self.keyed(out, "fairseq-wd-export", checkpoint, "--data",
                                                               self.data_bin, "--output", out, whole=True))
        return shipped

    def ctranslate2(self, models):
        """int8 CTranslate2 copies of the teacher and of the KD and WD students, for the same table: each a row
        per compute type of CT2_TYPES (the bench's --ct2-compute-type; float32 computes with the int8 weights
        converted on load). At small sizes float32 can be the faster (`faster_compute_types`)."""
        self.step("CTranslate2 int8 export")
        self.compute_types = {}  # {bench row: its CTranslate2 compute type}
        try:
            ct2.require()
        except ct2.DeployError as e:
            print(f"skipped: {e}")
            return {}
        exported = {}
        for method, name in [("teacher", "teacher"), *((m, self.row(m)) for m in CT2_ROWS if m in self.methods)]:
            for i, checkpoint in enumerate(models[name]):
                folder = "teacher" if method == "teacher" else self.folder(method, self.seeds[i])
                out = self.path("ct2", folder)  # written aside and renamed by the export
                os.makedirs(self.path("ct2"), exist_ok=True)
                self.keyed(out, "fairseq-wd-export", checkpoint, "--to", "ctranslate2", "--quantization", "int8",
                           "--data", self.data_bin, "--output", out, whole=True)
                for kind in CT2_TYPES:
                    exported.setdefault(f"{name}, CTranslate2 {kind}", []).append(out)
                    self.compute_types[f"{name}, CTranslate2 {kind}"] = kind
        return exported

    def faster_compute_types(self, table):
        """The bench table with each CTranslate2 copy at the faster of its compute types where they decode to
        the same BLEU (both rows where it differs; bench/bench.md keeps every row), and a line saying so."""
        try:
            with open(self.path("bench", "bench.json")) as f:
                rows = {m["name"]: m for m in json.load(f).get("models", [])}  # a multilingual bench: per pair
        except (OSError, ValueError):
            return table
        hidden, notes = set(), []
        for name in dict.fromkeys(row.rsplit(", CTranslate2 ", 1)[0] for row in getattr(self, "compute_types", {})):
            found = [rows[f"{name}, CTranslate2 {kind}"] for kind in CT2_TYPES if f"{name}, CTranslate2 {kind}" in rows]
            if len(found) < 2:
                continue
            fast, *slower = sorted(found, key=lambda m: -m["sentences_per_s"])
            same = [m for m in slower if (m["bleu"], m["chrf"]) == (fast["bleu"], fast["chrf"])]
            hidden.update(m["name"] for m in same)
            notes.append(f"{name}: {self.compute_types[fast['name']]} {fast['sentences_per_s']:.1f} sentences/s, "
                         + ", ".join(f"{self.compute_types[m['name']]} {m['sentences_per_s']:.1f}" for m in slower)
                         + (" (the same BLEU and chrF: the slower row is left out here)" if same else
                            " (their BLEU differs: both rows shown)"))
        if not notes:
            return table
        lines = [line for line in table.splitlines()
                 if not any(re.match(rf"\| \d+ \| {re.escape(n)}( \+ shortlist[^|]*)? \|", line) for n in hidden)]
        return ("\n".join(lines) + "\n\nCTranslate2 compute types (int8 weights; float32 converts them on load), "
                "the faster first: " + "; ".join(notes) + ".\n")

    def bench(self, models, vmap=None):
        """fairseq-wd-bench of every row under one length limit: its table (bench/bench.md)."""
        self.step("fairseq-wd-bench: BLEU and decoding speed")
        out = self.path("bench")
        wd, kd = self.row("wd"), self.row("kd")
        compare = [f"--compare={a}={b}" for a, b in ((wd, kd), *((f"{wd}, CTranslate2 {t}", f"{kd}, CTranslate2 {t}")
                                                                 for t in CT2_TYPES))
                   if a in models and b in models]  # WD against the paper's KD baseline
        compare += [f"--ct2-compute-type={row}={kind}" for row, kind in getattr(self, "compute_types", {}).items()]
        focus = [f"--focus={wd}"] if wd in models else []  # else the bench's default: its last fairseq row
        bench_args = shlex.split(self.args.bench_args)
        if self.args.fp16:  # the fairseq rows decode at the training's precision, added to any --generate-args given
            given = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
            given.add_argument("--generate-args", default="")
            previous = given.parse_known_args(bench_args)[0].generate_args
            bench_args.append("--generate-args=" + " ".join(filter(None, [previous, "--fp16"])))
        self.keyed(out, "fairseq-wd-bench", self.data_bin, *[f"--model={n}={p}" for n, ps in models.items() for p in ps],
                   *compare, *focus, *([f"--shortlist={vmap}"] if vmap else []),
                   *self.bench_inputs(), "--post-process", self.args.post_process,
                   "--tokenize", self.bleu_tokenize(), *bench_args,
                   "--repeats", self.args.bench_repeats or self.recipe.bench_repeats,
                   "--max-len-a", self.recipe.max_len_a, "--max-len-b", self.recipe.max_len_b,
                   "--output-dir", out, *(["--cpu"] if self.cpu else []))
        results.write_run(out, getattr(self.args, "command", None) or ["fairseq-wd-pipeline"], self.work)
        with open(os.path.join(out, "bench.md")) as f:
            return f.read()

    def bench_inputs(self):
        """The bench's --references: the raw test targets (or the given ones; none for a data-bin's)."""
        references = self.args.references or ([] if self.args.data_bin else [self.path("raw", f"test.{self.tgt}")])
        return [f"--references={os.path.abspath(r)}" for r in references]

    def bleu_tokenize(self):
        return self.args.bleu_tokenize or ("zh" if self.tgt.split("_")[0].lower() == "zh" else "13a")

    def valid_bleu(self, checkpoint):
        """The teacher's BLEU on valid, decoded as fairseq's --eval-bleu decodes the students' curves."""
        proc = steps.run(["fairseq-generate", self.data_bin, "--user-dir", PACKAGE, "--path", checkpoint,
                          "--gen-subset", "valid", "--beam", "4", "--batch-size", "128",
                          "--max-len-a", self.recipe.max_len_a, "--max-len-b", self.recipe.max_len_b,
                          "--post-process", self.args.post_process, "--scoring", "sacrebleu",
                          *(["--cpu"] if self.cpu else [])], capture_output=True, text=True)
        return float(re.search(r"BLEU = ([\d.]+)", proc.stdout).group(1))

    def learning_curves(self, teacher):
        """Valid BLEU against updates of every training and seed (plot next to bench.png) and how each
        training ended (under --patience what stopped it, otherwise whether its valid selection metric
        stopped improving): markdown tables for results.md."""
        self.step("learning curves (valid BLEU and loss against updates)")
        found = {}
        for (row, seed), logs in self.logs.items():
            label = row if seed is None or len(self.seeds) == 1 else f"{row}, seed {seed}"
            found[label] = [p for log, offset in logs if os.path.exists(log) for p in curves.read_validations(log, offset)]
        teacher_bleu = self.valid_bleu(teacher)
        os.makedirs(self.path("bench"), exist_ok=True)
        curves.plot(found, self.path("bench", "curves.png"),
                    {f"teacher {teacher_bleu:.1f}": teacher_bleu, "75% of the teacher": 0.75 * teacher_bleu})
        with open(self.path("bench", "curves.json"), "w") as f:
            json.dump({"teacher_valid_bleu": teacher_bleu, "curves": found}, f, indent=1)
        metric = self.selected_by()
        # Under --patience the stopping table says how each training ended; without it, whether the best
        # validation lies far enough before the end tells whether the update count sufficed.
        judged = not self.recipe.patience
        header = ["model", "updates", "valid BLEU at the end", "best valid BLEU (update)"]
        if judged:
            header += [*([f"best valid {metric} at update"] if metric != "bleu" else []),
                       f"{metric} stopped improving ({self.recipe.converged_share:.0%} of the updates)"]
        lines = [f"Learning curves on valid (fairseq --eval-bleu, beam 4; the teacher: {teacher_bleu:.2f} BLEU), "
                 "bench/curves.png:", "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        for row, points in found.items():
            with_bleu = [p for p in points if "bleu" in p]
            if not with_bleu:
                continue
            end, top = with_bleu[-1], curves.best(with_bleu, "bleu")
            cells = [row, end["update"], f"{end['bleu']:.2f}", f"{top['bleu']:.2f} ({top['update']})"]
            if judged:
                ending = curves.convergence(points, self.recipe.converged_share * end["update"], metric)
                cells += [*([ending["best_update"]] if metric != "bleu" else []),
                          "yes" if ending["converged"] else "no"]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
        return "\n".join(lines) + "\n\n" + self.stopping_table()

    def selected_by(self):
        """What chose each training's checkpoint_best.pt (and stopped it under --patience): bleu or loss."""
        return early_stopping.selected_by(self.validation())

    def stopping_table(self):
        """Per training: its best validation by the selection metric (checkpoint_best.pt) and what ended it,
        fairseq's --patience (converged) or the update cap, at which update."""
        metric = self.selected_by()
        every = early_stopping.validation_interval(self.recipe.validate_interval_updates, self.args.update_scale)
        view = (f"Early stopping: --patience {self.recipe.patience} validations of {every} updates without a better "
                f"valid {metric}; the update counts are caps (trained to convergence)." if self.recipe.patience else
                "No early stopping: every training runs its update count (the paper's view at equal updates).")
        view += f" checkpoint_best.pt: the best valid {metric}."
        lines = [view, "", f"| training | best valid {metric} (update) | stopped by | at update | cap (--max-update) |",
                 "|---|---|---|---|---|"]
        for name, folder, cap in self.trainings:
            log = os.path.join(folder, "train.log")
            stop = early_stopping.stopped(log, cap)
            top = curves.best(curves.read_validations(log), metric) if os.path.exists(log) else None
            shown = f"{top[metric]:.2f} ({top['update']})" if top else "-"
            lines.append(f"| {name} | {shown} | {stop['by']} | {stop['update']} | {cap} |")
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
        vmap = self.shortlist(kd_bin) if self.args.shortlist else None
        models = {"teacher": [teacher], **self.students(teacher, kd_bin)}
        shipped = self.shipped(models)
        models.update(self.ctranslate2(models))
        table = self.faster_compute_types(self.bench(models, vmap))
        report = f"{table}\n{LEGEND.format(kd_alpha=self.recipe.kd_alpha)}\n\n{self.learning_curves(teacher)}"
        if os.path.exists(self.path("raw", "splits.txt")):
            with open(self.path("raw", "splits.txt")) as f:
                report += f"\nData: {f.read()}"
        report += ("\nThe students to ship, weights and a plain config that fairseq and ct2-fairseq-converter load "
                   "without the plugin: " + ", ".join(os.path.relpath(p, self.work) for ps in shipped.values() for p in ps) + "\n")
        with open(self.path("results.md"), "w") as f:
            f.write(report)
        print(f"\n{report}\nsaved to {self.path('results.md')}; pipeline took {(time.time() - started) / 60:.1f} min")


def pack_teacher(checkpoint, spm_model, dictionary, out_dir):
    """A shippable teacher: float16 weights of a plain `transformer`, its dictionary and sentencepiece model."""
    os.makedirs(out_dir, exist_ok=True)
    state = load_state(checkpoint, "teacher checkpoint")
    save_plain_transformer(os.path.join(out_dir, "checkpoint.pt"), state["model"], model_args(state),
                           dtype=torch.float16)
    if os.path.exists(spm_model):  # none with --data-bin
        shutil.copy(spm_model, os.path.join(out_dir, "spm.model"))
    shutil.copy(dictionary, os.path.join(out_dir, "dict.txt"))
