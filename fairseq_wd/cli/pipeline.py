"""`fairseq-wd-pipeline`: the paper's experiment in one command, on real text.

corpus split -> joint sentencepiece -> fairseq-preprocess -> teacher -> teacher output for the train
set (sequence-level KD data) -> students of one architecture, all with the same number of updates:
from scratch, sequence-level KD, word-level `logit_kd`, `pkd`, layer-copy init (SMALL only: TINY's
decoder is narrower than the teacher's), Weight Distillation phase 1 + 2, Pea-KD (`--pea-kd`) -> int8 CTranslate2 copies
of the teacher and the WD student (when `ctranslate2` is installed) -> `fairseq-wd-bench`.

Each step is skipped when its output exists and is complete, so a killed run resumes where it
stopped (fairseq-train itself resumes from checkpoint_last.pt). The table is printed and saved to
WORK_DIR/results.md.

    fairseq-wd-pipeline                                   # = make demo: shipped corpus and teacher
    fairseq-wd-pipeline --budget full --train-teacher     # a real teacher (GPU: minutes-hours)
    fairseq-wd-pipeline --tsv my.de-en.tsv --source-lang de --target-lang en --work-dir runs/de-en
    fairseq-wd-pipeline --teacher ckpt.pt --teacher-dict dict.txt --teacher-spm spm.model ...
"""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

import torch

from ..checkpoints import CheckpointError, load_state, model_args, save_plain_transformer
from ..deploy import ct2
from ..pipeline import corpus
from ..pipeline.budgets import BUDGETS

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED_TEACHER = os.path.join(PACKAGE, "data", "demo_teacher")
BIN = os.path.dirname(sys.executable)


def get_parser():
    p = argparse.ArgumentParser(prog="fairseq-wd-pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", default="runs/pipeline", help="everything is written here (default runs/pipeline)")
    p.add_argument("--budget", choices=sorted(BUDGETS), default="demo",
                   help="model sizes and update counts: demo (30 min on a 2-core CPU) or full (GPU)")
    p.add_argument("--update-scale", type=float, default=1.0, help="multiplies every update count (e.g. 0.1 to try)")
    p.add_argument("--student", choices=["tiny", "small"], default="tiny",
                   help="student architecture: tiny (1 half-width decoder layer) or small (2 full-width)")
    data = p.add_argument_group("corpus (default: the shipped mpl.en-ro)")
    data.add_argument("--tsv", help="parallel text as 'source<TAB>target' lines (.xz/.gz allowed)")
    data.add_argument("--source-file", help="source side, line-aligned with --target-file")
    data.add_argument("--target-file", help="target side")
    data.add_argument("--source-lang", default="en")
    data.add_argument("--target-lang", default="ro")
    data.add_argument("--test-size", type=int, default=500, help="test sentences split off (seeded)")
    data.add_argument("--valid-size", type=int, default=300, help="valid sentences split off (seeded)")
    t = p.add_argument_group("teacher (default: trained here; the shipped one for demo on mpl.en-ro)")
    t.add_argument("--teacher", help="an existing teacher checkpoint instead of training one")
    t.add_argument("--teacher-dict", help="the (joined) dictionary the teacher was trained with "
                                          "(default: dict.txt next to --teacher)")
    t.add_argument("--teacher-spm", help="the sentencepiece model of the teacher's data (default: spm.model next to it)")
    t.add_argument("--train-teacher", action="store_true", help="train a teacher even where one is shipped")
    p.add_argument("--bench-repeats", type=int, help="timed decoding runs per model (default: the budget's)")
    p.add_argument("--pea-kd", action="store_true", help="also train Pea-KD students: SPS + logit_kd, "
                                                         "PTP-initialised + logit_kd, SPS + PTP + pkd")
    p.add_argument("--fp16", action="store_true", help="train with --fp16 (GPU)")
    p.add_argument("--train-args", default="", help="more fairseq-train options for every training, e.g. "
                                                    "--train-args='--max-tokens 8192 --num-workers 2' (they win "
                                                    "over the budget's)")
    p.add_argument("--pack-teacher", metavar="DIR", help="after training, write the teacher as a float16 "
                                                        "bundle (checkpoint.pt, dict.txt, spm.model) to DIR")
    return p


class Pipeline:
    def __init__(self, args):
        self.args = args
        self.budget = BUDGETS[args.budget]
        self.work = args.work_dir
        self.src, self.tgt = args.source_lang, args.target_lang
        self.cpu = not torch.cuda.is_available()
        self.step_no = 0

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def step(self, title):
        self.step_no += 1
        print(f"\n=== [{self.step_no}] {title} ({time.strftime('%H:%M:%S')}) ===", flush=True)

    def sh(self, *cmd):
        print("+", " ".join(map(str, cmd)), flush=True)
        exe = os.path.join(BIN, cmd[0])
        subprocess.run([exe if os.path.exists(exe) else cmd[0], *map(str, cmd[1:])], check=True)

    def updates(self, n):
        return max(1, int(n * self.args.update_scale))

    # -- teacher choice, checked before any long work ------------------------------------------------
    def teacher_bundle(self):
        """(checkpoint, dict, spm model) of a given or shipped teacher, or None to train one."""
        a = self.args
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
                                      "sentencepiece model its data was made with (--teacher-dict, --teacher-spm).")
        from fairseq.data import Dictionary

        rows = load_state(bundle[0], "teacher checkpoint")["model"]["encoder.embed_tokens.weight"].shape[0]
        entries = len(Dictionary.load(bundle[1]))
        if rows != entries:
            raise CheckpointError(f"teacher {bundle[0]} has {rows} embedding rows but {bundle[1]} has {entries} "
                                  "entries: not the teacher's dictionary")
        return bundle

    # -- data ------------------------------------------------------------------------------------------
    def prepare(self, bundle):
        a, raw, data_bin = self.args, self.path("raw"), self.path("data-bin")
        self.step("corpus: split, sentencepiece, fairseq-preprocess")
        if os.path.exists(self.path("data-bin", "done")):
            print("done already:", data_bin)
            return data_bin
        if not (a.tsv or a.source_file) and (self.src, self.tgt) != ("en", "ro"):
            raise corpus.CorpusError("the shipped corpus is English-Romanian: keep --source-lang en --target-lang ro, "
                                     "or give your own with --tsv / --source-file --target-file")
        pairs = corpus.read_pairs(a.tsv, a.source_file, a.target_file)
        splits = corpus.split(pairs, a.test_size, a.valid_size)
        corpus.write_splits(splits, raw, self.src, self.tgt)
        print({k: len(v) for k, v in splits.items()}, "sentence pairs")
        if bundle:
            spm_model = self.path("spm.model")
            shutil.copy(bundle[2], spm_model)
        else:
            spm_model = corpus.train_sentencepiece(raw, self.src, self.tgt, self.path("spm"), self.budget.vocab_size)
        corpus.encode(raw, self.src, self.tgt, spm_model)
        shutil.rmtree(data_bin, ignore_errors=True)
        self.sh("fairseq-preprocess", *corpus.preprocess_args(raw, self.src, self.tgt, data_bin,
                                                               bundle[1] if bundle else None))
        open(os.path.join(data_bin, "done"), "w").close()
        return data_bin

    # -- training --------------------------------------------------------------------------------------
    def train(self, name, updates, *extra, data=None):
        save = self.path(name)
        if os.path.exists(os.path.join(save, "done")):
            print("done already:", save)
        else:
            flags = [*self.budget.train, *(["--cpu"] if self.cpu else []), *(["--fp16"] if self.args.fp16 else []),
                     *shlex.split(self.args.train_args)]
            self.sh("fairseq-train", data or self.path("data-bin"), "--user-dir", PACKAGE, "--save-dir", save,
                    "--max-update", self.updates(updates), *flags, *extra)
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
                          *self.criterion("label_smoothed_cross_entropy"))
        if self.args.pack_teacher:
            pack_teacher(ckpt, self.path("spm.model"), self.path("data-bin", f"dict.{self.src}.txt"),
                         self.args.pack_teacher)
        return ckpt

    def teacher_output(self, teacher):
        self.step("teacher output for the train set (sequence-level KD data)")
        kd_bin = self.path("kd-bin")
        if os.path.exists(os.path.join(kd_bin, f"train.{self.src}-{self.tgt}.{self.tgt}.bin")):
            print("done already:", kd_bin)
        else:
            self.sh("fairseq-wd-distill-data", self.path("data-bin"), "--user-dir", PACKAGE, "--path", teacher,
                    *(["--cpu"] if self.cpu else []), "--dest", kd_bin, "--gen-subset", "train",
                    "--beam", self.budget.distill_beam, "--batch-size", "128")
        return kd_bin

    def student_flags(self, family="wd_transformer"):
        return ["--arch", f"{family}_{self.args.student}", *self.budget.student_encoder]

    def kd_flags(self, teacher):
        return ["--task", "distillation", "--teacher-path", teacher, "--kd-alpha", "0.5"]

    def kd_student(self, teacher):
        label = self.args.student.upper()
        self.step(f"{label} + word-level KD (logit_kd)")
        return {f"{label} + logit_kd": self.train(f"{self.args.student}_logit_kd", self.budget.student_updates,
                                                  *self.student_flags(), *self.kd_flags(teacher),
                                                  *self.criterion("logit_kd"))}

    def students(self, teacher, kd_bin):
        student = self.student_flags()
        n = self.budget.student_updates
        label = self.args.student.upper()
        plain = self.criterion("label_smoothed_cross_entropy")
        kd = self.kd_flags(teacher)
        models = {}
        self.step(f"{label} from scratch")
        models[f"{label} from scratch"] = self.train(f"{self.args.student}_scratch", n, *student, *plain)
        self.step(f"{label} + sequence-level KD (trained on the teacher's output)")
        models[f"{label} + seq-KD"] = self.train(f"{self.args.student}_seqkd", n, *student, *plain, data=kd_bin)
        models.update(self.kd_student(teacher))
        self.step(f"{label} + Patient-KD (pkd)")
        models[f"{label} + pkd"] = self.train(f"{self.args.student}_pkd", n, *student, *kd, *self.criterion("pkd"))
        self.step(f"{label} + layer-copy init (DistilBART)")
        if self.args.student == "small":
            init = self.path("small_layer_copy_init.pt")
            if not os.path.exists(init):
                self.sh("fairseq-wd-init-student", "--teacher-path", teacher, *student, "--output", init)
            models[f"{label} + layer-copy init"] = self.train("small_layer_copy", n, *student, *plain,
                                                              "--finetune-from-model", init)
        else:
            print("skipped: TINY's decoder is half the teacher's width, so teacher layers cannot be copied "
                  "(that is what Weight Distillation is for); use --student small")
        self.step(f"{label} + Weight Distillation, phase 1 (parameter generator)")
        wd = ["--extra-train-data", kd_bin]
        phase1 = self.train("wd_phase1", n // 2, *student, "--task", "weight_distillation", "--teacher-path",
                            teacher, *self.criterion("weight_distillation"), *wd)
        exported = self.path("wd_phase1", "student.pt")
        if not os.path.exists(exported):
            self.sh("fairseq-wd-export", phase1, "--output", exported)
        self.step(f"{label} + Weight Distillation, phase 2 (fine-tuning)")
        models[f"{label} + WD"] = self.train("wd_phase2", n - n // 2, *student, "--task", "distillation", *wd,
                                             "--finetune-from-model", exported, *plain)
        if self.args.pea_kd:
            models.update(self.pea_kd(teacher))
        return models

    def pea_kd(self, teacher):
        """Pea-KD's two parts on their own with logit_kd, and together with pkd as Pea-KD does: the same
        total updates as every student; PTP takes the first half."""
        s, label, n = self.args.student, self.args.student.upper(), self.budget.student_updates
        plain, sps = self.student_flags(), [*self.student_flags("sps_transformer"), "--sps-reuse", self.budget.sps_reuse]
        kd = self.kd_flags(teacher)
        models = {}
        self.step(f"{label} + shuffled parameter sharing (SPS, --sps-reuse {self.budget.sps_reuse}) + logit_kd")
        models[f"{label} + SPS + logit_kd"] = self.train(f"{s}_sps_logit_kd", n, *sps, *kd, *self.criterion("logit_kd"))
        for name, folder, arch, criterion in ((f"{label} + PTP + logit_kd", f"{s}_ptp_logit_kd", plain, "logit_kd"),
                                              (f"{label} + Pea-KD (SPS+PTP+pkd)", f"{s}_pea_kd", sps, "pkd")):
            self.step(f"{name}: pre-training on the teacher's predictions (PTP)")
            ptp = self.train(f"{folder}_ptp", n // 2, *arch, "--task", "distillation", "--teacher-path", teacher,
                             *self.criterion("ptp"))
            self.step(f"{name}: {criterion} from the PTP student")
            models[name] = self.train(folder, n - n // 2, *arch, *kd, *self.criterion(criterion),
                                      "--finetune-from-model", ptp)
        return models

    def ctranslate2(self, models):
        """int8 CTranslate2 copies of the teacher and the WD student, for the same table."""
        self.step("CTranslate2 int8 export of the teacher and the WD student")
        try:
            ct2.require()
        except ct2.DeployError as e:
            print(f"skipped: {e}")
            return {}
        exported = {}
        for name in ("teacher", f"{self.args.student.upper()} + WD"):
            out = self.path("ct2", name.split()[0].lower() + ("_wd" if "WD" in name else ""))
            if not os.path.exists(out):
                self.sh("fairseq-wd-export", models[name], "--to", "ctranslate2", "--quantization", "int8",
                        "--data", self.path("data-bin"), "--output", out)
            exported[f"{name} (CTranslate2 int8)"] = out
        return exported

    def bench(self, models):
        self.step("fairseq-wd-bench: BLEU and decoding speed")
        out = self.path("bench")
        if os.path.exists(self.path("results.md")) and bench_models(out) == list(models):
            print("done already:", self.path("results.md"))
            return self.path("results.md")
        self.sh("fairseq-wd-bench", self.path("data-bin"), *[f"--model={n}={p}" for n, p in models.items()],
                "--references", self.path("raw", f"test.{self.tgt}"), "--repeats", self.args.bench_repeats or self.budget.bench_repeats,
                "--output-dir", out, *(["--cpu"] if self.cpu else []))
        shutil.copy(os.path.join(out, "bench.md"), self.path("results.md"))
        return self.path("results.md")

    def run(self):
        os.makedirs(self.work, exist_ok=True)
        started = time.time()
        bundle = self.teacher_bundle()
        self.prepare(bundle)
        teacher = self.teacher(bundle)
        kd_bin = self.teacher_output(teacher)
        models = {"teacher": teacher, **self.students(teacher, kd_bin)}
        models.update(self.ctranslate2(models))
        results = self.bench(models)
        print(f"\n{open(results).read()}\nsaved to {results}; pipeline took {(time.time() - started) / 60:.1f} min")


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
    shutil.copy(spm_model, os.path.join(out_dir, "spm.model"))
    shutil.copy(dictionary, os.path.join(out_dir, "dict.txt"))


def main(argv=None):
    args = get_parser().parse_args(argv)
    try:
        Pipeline(args).run()
    except (CheckpointError, corpus.CorpusError) as e:
        sys.exit(f"fairseq-wd-pipeline: error: {e}")
    except subprocess.CalledProcessError as e:
        sys.exit(f"fairseq-wd-pipeline: step failed ({' '.join(map(str, e.cmd[:2]))} ...); "
                 "fix the cause and rerun the same command: finished steps are skipped")


if __name__ == "__main__":
    main()
