"""`fairseq-wd-bench`: BLEU, chrF and decoding speed of several checkpoints under identical settings.

Each model is decoded by `fairseq-generate` itself (beam 6, lenpen 1.0, batch 64 by default, as the
WD authors; same threads for all; one process runs every fairseq-generate of the bench, each loading its
model anew), `--repeats` times, the model order rotating between rounds so that machine drift hits every
model alike; speed is the median of fairseq-generate's own per-batch timer around its generator, its
first batch decoded once untimed before (the run's one-time costs). A
CTranslate2 folder (`fairseq-wd-export --to ctranslate2`) is decoded by CTranslate2 with the same beam,
length penalty, batches, length limits (--max-len-a/-b, --min-len), threads and warm-up, timed around its
translate calls on inputs built before the clock (bench/decoding.py: TIMED says what both clocks hold).
Every test sentence must get a hypothesis. Hypotheses are scored with sacrebleu (BLEU and chrF,
signatures printed) against the raw references (`--references`) or the post-processed targets of the
data-bin (an unknown word written `<<unk>>`, as fairseq's scorer does, so that `<unk>` is not credited).

    fairseq-wd-bench data-bin --model teacher=teacher.pt --model wd=seed1.pt --model wd=seed2.pt \\
        --references raw/test.ro --output-dir bench/ [--cpu] [--compare "wd=kd"] [--focus wd]

A NAME given several times is one row of several seeds: BLEU and chrF are their mean and sd, speed is
the first seed's. Every row is tested against the first (sacrebleu's paired bootstrap), and the
`--compare ROW=BASELINE` pairs too. Options bench does not know are refused (a typo would otherwise go
unnoticed); other fairseq-generate options go in --generate-args, which only the fairseq rows get, except
two that every row follows: -s/-t name the pair to decode and score (a data-bin with several pairs needs
them), and --tokenizer/--bpe (e.g. `--tokenizer moses`) decode every row's output and the default
references as fairseq-generate's D- lines are decoded. Options that would make the fairseq rows' batches
differ (--max-tokens, --required-batch-size-multiple, --num-workers) or print no hypotheses (--quiet,
--results-path) are refused.
The first model is the reference for speed-up and size ratio. Writes bench.md, bench.json, bench.png
(with matplotlib), sentences.tsv and NAME.hyp per model (NAME.seedK.hyp for further seeds) to --output-dir.

`--shortlist vmap.txt` (fairseq-wd-shortlist) adds after every model a row `NAME + shortlist` decoded over
each batch's candidate targets (bench/shortlist_rows.py), tested against its plain row, and a Shortlist section.

A multilingual data-bin: `--generate-args "--task translation_multi_simple_epoch --lang-pairs ... (the
model's language options)"` benches every pair of --lang-pairs in turn into OUTPUT/SRC-TGT/, CTranslate2
rows with that pair's language tokens, and OUTPUT/bench.md holds the average over the pairs and each
pair's table; --references are then SRC-TGT=FILE.
"""
import argparse
import sys

import torch

from ..bench.decoding import DecodingError
from ..bench.run import BenchError, run
from ..checkpoints import CheckpointError
from ..datasets.data_bin import DataBinError
from ..export import ct2
from ..shortlist.vmap import VmapError


def get_parser():
    p = argparse.ArgumentParser(prog="fairseq-wd-bench", description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="the binarized data-bin (fairseq-preprocess output) holding --gen-subset")
    p.add_argument("--model", action="append", required=True, metavar="NAME=CHECKPOINT",
                   help="a model to decode: a fairseq checkpoint, or a CTranslate2 folder (fairseq-wd-export "
                        "--to ctranslate2), decoded with the same settings; repeat. The first is the reference. "
                        "The same NAME again adds a seed to that row: BLEU and chrF are the seeds' mean and sd, "
                        "each seed decoded once; speed is timed (--repeats) on the first seed")
    p.add_argument("--compare", action="append", default=[], metavar="ROW=BASELINE",
                   help="also test row ROW against row BASELINE (paired bootstrap, sacrebleu), as written in "
                        "--model; a name cannot hold '=', so the pair splits at its one '='. Every row is "
                        "tested against the first model anyway. Repeat for more pairs")
    p.add_argument("--focus", metavar="NAME",
                   help="the row whose worst sentences against the first model (by sentence chrF) bench.md "
                        "shows (default: the last fairseq row)")
    p.add_argument("--gen-subset", default="test", help="split to decode (default: test)")
    p.add_argument("--beam", type=int, default=6, help="beam size (default 6, as the WD authors)")
    p.add_argument("--lenpen", type=float, default=1.0, help="length penalty (default 1.0)")
    p.add_argument("--batch-size", type=int, default=64, help="sentences per batch (default 64)")
    p.add_argument("--max-len-a", type=float, default=0,
                   help="output length limit a * source length + b, as fairseq-generate (the source length of "
                        "the batch's longest sentence, with its </s>), CTranslate2 rows too (default 0)")
    p.add_argument("--max-len-b", type=int, default=200, help="see --max-len-a (default 200)")
    p.add_argument("--min-len", type=int, default=1,
                   help="minimum output length in tokens, for every row (default 1). --min-len L --max-len-a 0 "
                        "--max-len-b L forces L tokens, so that only model cost enters the speed")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per model; speed is the median")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help="CPU threads for every run (OMP_NUM_THREADS; default: torch's default here)")
    p.add_argument("--cpu", action="store_true", help="decode on CPU even when a GPU is available")
    p.add_argument("--post-process", default="sentencepiece",
                   help="fairseq-generate --post-process for the hypotheses (default: sentencepiece)")
    p.add_argument("--references", action="append", metavar="FILE",
                   help="raw (detokenized) reference file, one line per test sentence in data-bin order; repeat "
                        "for multiple references (NIST); SRC-TGT=FILE for a pair of a multilingual bench. Default: "
                        "the data-bin targets, post-processed, an unknown word written <<unk>> as fairseq's scorer "
                        "does (a hypothesis' <unk> never matches)")
    p.add_argument("--tokenize", default="13a", help="sacrebleu tokenizer (13a; zh for Chinese targets)")
    p.add_argument("--lowercase", action="store_true",
                   help="case-insensitive BLEU and chrF (as NIST Zh-En is reported)")
    p.add_argument("--output-dir", default="bench",
                   help="where bench.md / .json / .png and sentences.tsv go (default: bench)")
    p.add_argument("--shortlist", action="append", default=[], metavar="[LABEL=]VMAP_TXT",
                   help="a lexical shortlist (fairseq-wd-shortlist): after every model a row 'NAME + shortlist' "
                        "decoded over each batch's candidates (fairseq rows: --task distillation --shortlist; "
                        "CTranslate2 rows: use_vmap), tested against its plain row; bench.md gains a Shortlist "
                        "section. Repeat with LABEL=FILE for several (rows 'NAME + shortlist LABEL')")
    p.add_argument("--ct2-compute-type", action="append", default=[], metavar="[ROW=]TYPE",
                   help="the compute type of the CTranslate2 rows (ctranslate2.Translator's compute_type: "
                        f"{', '.join(ct2.COMPUTE_TYPES)}; the weights are converted to it on load): TYPE for every "
                        "CTranslate2 row, ROW=TYPE for the row ROW (and its shortlist rows); repeat. Default: "
                        "default, the type the folder was saved in (fairseq-wd-export --quantization). The same "
                        "folder may be given as two rows, e.g. --model 'x int8=DIR' --model 'x float32=DIR' "
                        "--ct2-compute-type 'x int8=int8' --ct2-compute-type 'x float32=float32'")
    p.add_argument("--generate-args", default="", metavar="'OPTIONS'",
                   help="more fairseq-generate options in one string, e.g. --generate-args='--unkpen 1'. "
                        "Only the fairseq rows get them, CTranslate2 rows do not, except -s/-t (the pair "
                        "decoded and scored) and --tokenizer/--bpe (every row's output and the default "
                        "references decoded alike, e.g. --tokenizer moses); options bench sets itself "
                        "(--beam, --batch-size, ...) or that break the comparison (--max-tokens, --quiet, "
                        "...) are refused here")
    return p


def main(argv=None):
    parser = get_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)} (fairseq-generate options go in "
                     "--generate-args='...', which CTranslate2 rows do not get)")
    try:
        run(args)
    except (BenchError, DecodingError, DataBinError, CheckpointError, ct2.DeployError, VmapError) as e:
        sys.exit(f"fairseq-wd-bench: error: {e}")


if __name__ == "__main__":
    main()
