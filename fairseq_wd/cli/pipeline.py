"""`fairseq-wd-pipeline`: the paper's experiment in one command, on real text.

corpus split (or given valid/test sets, or a given data-bin) -> joint sentencepiece -> fairseq-preprocess -> teacher -> teacher output for the train
set (sequence-level KD data) -> the students of --methods, one architecture, all with the same number
of updates (default: the WD paper's KD baseline, i.e. the student trained on original + teacher
output, and Weight Distillation phase 1 + 2 on the same data) -> int8 CTranslate2 copies of the
teacher and of those two -> `fairseq-wd-bench` under one relative length limit -> learning curves
(valid BLEU against updates, from fairseq's --eval-bleu) and what ended each training (--patience or its cap).

Every step is keyed by what made it (its command line or settings, the keys of the steps it reads, the
content of given files, the fairseq-wd version), stored beside its output. A rerun skips a step done for
the same key, redoes a step whose key changed (the log says what changed; the old output is moved to
WORK_DIR/stale/) and so every step after it, and resumes a killed one (fairseq-train from its
checkpoint_last.pt). The table is printed and saved to WORK_DIR/results.md.

    fairseq-wd-pipeline                                   # = make demo: shipped corpus and teacher
    fairseq-wd-pipeline --methods all                     # + scratch, seq-KD, logit_kd, pkd, layer-copy, Pea-KD
    fairseq-wd-pipeline --budget cpu --work-dir runs/cpu  # a teacher and students trained to convergence (CPU)
    fairseq-wd-pipeline --budget full --fp16              # a bigger teacher, trained longer (GPU)
    fairseq-wd-pipeline --tsv my.de-en.tsv --source-lang de --target-lang en --work-dir runs/de-en
    fairseq-wd-pipeline --teacher ckpt.pt --teacher-dict dict.txt --teacher-spm spm.model ...
    fairseq-wd-pipeline --data-bin data-bin --teacher ckpt.pt --post-process subword_nmt --references test.en ...
    fairseq-wd-pipeline --budget multilingual --pair en-ro=mpl.en-ro.tsv.xz --pair en-de=mpl20k.en-de.tsv.xz
    fairseq-wd-pipeline --budget multilingual --data-bin data-bin --teacher m2m.pt --pair en-ro --pair en-de ...
"""
import argparse
import subprocess
import sys

from ..checkpoints import DISK_ERRORS, CheckpointError, OutputError
from ..pipeline.corpus import CorpusError
from ..pipeline import multilingual
from ..pipeline.experiment import DEFAULT_METHODS, METHODS, Pipeline
from ..early_stopping import SELECT_BY
from ..recipes import RECIPES


def parse_methods(spec):
    chosen = list(METHODS) if spec.strip() == "all" else [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"--methods {spec!r}: unknown {unknown}; choose from {', '.join(METHODS)} "
                                         "or all")
    return [m for m in METHODS if m in chosen]  # the table's order


def parse_seeds(spec):
    try:
        seeds = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 1:
        raise argparse.ArgumentTypeError(f"--seeds {spec!r}: give distinct positive integers, e.g. --seeds 1,2,3")
    return seeds


def get_parser():
    p = argparse.ArgumentParser(prog="fairseq-wd-pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", default="runs/pipeline", help="everything is written here (default runs/pipeline)")
    p.add_argument("--budget", choices=sorted(RECIPES), default="demo", metavar="RECIPE",
                   help="the training recipe (fairseq_wd/recipes.py): model sizes, settings and update counts: demo (15 "
                        "min on a 2-core CPU), cpu (the demo's models trained to convergence: hours on a 2-core CPU), "
                        "multilingual (one teacher for the --pair corpora), full (GPU) or paper (the WD authors' settings, for WMT-size data on 8 GPUs)")
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
    data.add_argument("--pair", action="append", type=multilingual.parse_pair, metavar="SRC-TGT=TSV",
                      help="a language pair of one multilingual teacher ('source<TAB>target' lines); repeat for each "
                           "pair: the teacher (translation_multi_simple_epoch, language tokens, shared embeddings) and "
                           "its students are trained on them all, the bench reports each pair and their average. "
                           "With --data-bin and --teacher (a given multilingual teacher, e.g. M2M-100: its language "
                           "options are read from its checkpoint), write SRC-TGT: a pair of the data-bin")
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
                        "Default: the test targets (raw text; for --data-bin, post-processed). With --pair: "
                        "SRC-TGT=FILE")
    b.add_argument("--bleu-tokenize", help="sacrebleu's tokenizer (default: zh when the target is Chinese, else 13a)")
    b.add_argument("--shortlist", action="store_true",
                   help="build a lexical shortlist (fairseq-wd-shortlist) from the teacher output and add a row decoded "
                        "with it for every model, fairseq and CTranslate2 alike")
    b.add_argument("--bench-args", default="", help="more fairseq-wd-bench options, e.g. --bench-args=--lowercase")
    t = p.add_argument_group("teacher (default: trained here; the shipped one for demo on mpl.en-ro)")
    t.add_argument("--teacher", help="an existing teacher checkpoint instead of training one")
    t.add_argument("--teacher-dict", help="the (joined) dictionary the teacher was trained with (default: dict.txt "
                                          "next to --teacher); with --data-bin, its data-bin or dict.txt, compared "
                                          "symbol by symbol with the data's (without it only sizes can be checked)")
    t.add_argument("--teacher-spm", help="the sentencepiece model of the teacher's data (default: spm.model next to it)")
    t.add_argument("--train-teacher", action="store_true", help="train a teacher even where one is shipped")
    b.add_argument("--bench-repeats", type=int, help="timed decoding runs per model (default: the recipe's)")
    p.add_argument("--methods", type=parse_methods, default=DEFAULT_METHODS,
                   help=f"comma-separated students to train, from {', '.join(METHODS)}, or all (default "
                        f"{DEFAULT_METHODS}: the WD paper's KD baseline and WD). pea-kd adds three students: "
                        "SPS + logit_kd, PTP then logit_kd, SPS + PTP then pkd")
    p.add_argument("--seeds", type=parse_seeds, default=[1], metavar="1,2,3",
                   help="train every student once per seed (the teacher and its output are shared); each row "
                        "then reports the mean and standard deviation over seeds, speed from the first (default 1)")
    p.add_argument("--select-by", choices=SELECT_BY, default="bleu",
                   help="what chooses each bilingual training's checkpoint_best.pt and stops it under --patience: "
                        "valid bleu (default; fairseq's --best-checkpoint-metric bleu "
                        "--maximize-best-checkpoint-metric) or valid loss. Multilingual trainings have no "
                        "--eval-bleu: their valid loss decides")
    p.add_argument("--patience", type=int, metavar="N",
                   help="early stopping: stop a training after N validations without a better --select-by metric "
                        "(fairseq's --patience; update counts become caps); 0 trains every model for its full "
                        "update count (the paper's view at equal updates). Default: the recipe's (cpu: 4, others 0)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="train N students at once once the teacher's output exists (each its own log, cores/N "
                        "threads each unless OMP_NUM_THREADS is set); the steps and their keys do not change "
                        "(default 1)")
    p.add_argument("--redo", type=lambda s: [x.strip() for x in s.split(",") if x.strip()], default=[],
                   metavar="STEP,...",
                   help="redo these steps (a step's folder name, e.g. bench) even when done with the same key; "
                        "the old output is moved to WORK_DIR/stale/. Steps whose settings changed are redone anyway")
    p.add_argument("--fp16", action="store_true", help="train with --fp16 (GPU)")
    p.add_argument("--train-args", default="", help="more fairseq-train options for every training, e.g. "
                                                    "--train-args='--max-tokens 8192 --num-workers 2' (they win "
                                                    "over the recipe's)")
    p.add_argument("--teacher-args", default="", help="more fairseq-train options for the teacher trained here, e.g. "
                                                      "--teacher-args='--decoder-layers 6' (they win over the recipe's)")
    p.add_argument("--wd-args", default="", help="more fairseq-train options for WD phase 1 only, e.g. "
                                                 "--wd-args=--wd-separate-transforms or '--wd-init truncated-identity'")
    p.add_argument("--pack-teacher", metavar="DIR", help="after training, write the teacher as a float16 "
                                                        "bundle (checkpoint.pt, dict.txt, spm.model) to DIR")
    return p


def main(argv=None):
    parser = get_parser()
    args = parser.parse_args(argv)
    args.command = ["fairseq-wd-pipeline", *(sys.argv[1:] if argv is None else argv)]  # the bench's run.json
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: give at least 1")
    try:
        (multilingual.MultilingualPipeline if args.pair else Pipeline)(args).run()
    except (CheckpointError, CorpusError, OutputError) as e:
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
