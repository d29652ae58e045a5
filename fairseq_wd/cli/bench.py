"""`fairseq-wd-bench`: BLEU, chrF and decoding speed of several checkpoints under identical settings.

Each model is decoded by `fairseq-generate` itself (beam 6, lenpen 1.0, batch 64 by default, as the
WD authors; same threads for all), `--repeats` times, the model order rotating between rounds so
that machine drift hits every model alike; speed is the median of fairseq-generate's own per-batch timer
around its generator, its first batch decoded once untimed before (a fresh process's one-time costs). A
CTranslate2 folder (`fairseq-wd-export --to ctranslate2`) is decoded by CTranslate2 with the same beam,
length penalty, batches, length limits (--max-len-a/-b, --min-len), threads and warm-up, timed around its
translate calls on inputs built before the clock (decoding.TIMED says what both clocks hold).
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
each batch's candidate targets (bench_shortlist.py), tested against its plain row, and a Shortlist section.

A multilingual data-bin: `--generate-args "--task translation_multi_simple_epoch --lang-pairs ... (the
model's language options)"` benches every pair of --lang-pairs in turn into OUTPUT/SRC-TGT/, CTranslate2
rows with that pair's language tokens, and OUTPUT/bench.md holds the average over the pairs and each
pair's table; --references are then SRC-TGT=FILE.
"""
import argparse
import contextlib
import dataclasses
import io
import json
import os
import shlex
import sys

import torch

from fairseq import options

from ..checkpoints import CheckpointError
from .. import evaluation, multilingual
from .. import shortlist as sl
from ..bench import provenance
from ..decoding import TIMED, USER_DIR, DecodingError, Settings, TestSet, decode_rows
from ..deploy import ct2
from . import bench_shortlist
from .bench_report import markdown_table, pairs_table, plot

# fairseq-generate options that bench sets for every row (CTranslate2's included): the bench option to use
OWNED = {"--path": "--model", "--gen-subset": "--gen-subset", "--beam": "--beam", "--lenpen": "--lenpen",
         "--batch-size": "--batch-size", "--max-sentences": "--batch-size", "--max-len-a": "--max-len-a",
         "--max-len-b": "--max-len-b", "--min-len": "--min-len", "--post-process": "--post-process",
         "--remove-bpe": "--post-process", "--cpu": "--cpu", "--user-dir": None, "--shortlist": "--shortlist"}
# fairseq-generate options that would make the rows differ or leave nothing to score: (attribute, why)
REFUSED = {"--max-tokens": ("max_tokens", "its batches would differ from the CTranslate2 rows' and from the length "
                                          "limits' (fairseq-wd-bench's --batch-size sets them all)"),
           "--required-batch-size-multiple": ("required_batch_size_multiple", "its batches would differ from the "
                                              "CTranslate2 rows' and from the length limits'"),
           "--quiet": ("quiet", "fairseq-generate would print no hypotheses to score"),
           "--results-path": ("results_path", "the hypotheses would go to a file the bench does not read (the bench "
                                              "writes NAME.hyp to --output-dir)"),
           "--num-workers": ("num_workers", "fairseq-wd-bench loads fairseq's batches in the decoding process "
                                            "(--num-workers 0), as CTranslate2's are prepared, so that no loader "
                                            "process runs beside the timed threads")}


class BenchError(RuntimeError):
    pass


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


def generate_args(args):
    """--generate-args as a list, checked before anything is decoded: no option bench sets for every
    row (a CTranslate2 row would not follow it), none fairseq-generate does not know."""
    extra = shlex.split(args.generate_args)
    for token in extra:
        name = token.split("=")[0]
        if name == "--shortlist":
            raise BenchError("--generate-args: --shortlist would change the plain rows; use fairseq-wd-bench's "
                             "--shortlist, which adds a shortlist row per model")
        if name in OWNED:
            use = f"use fairseq-wd-bench's {OWNED[name]}" if OWNED[name] else "fairseq-wd-bench passes the plugin's"
            raise BenchError(f"--generate-args: {name} is set by fairseq-wd-bench for every row; {use}")
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parsed, unknown = options.parse_args_and_arch(options.get_generation_parser(),
                                                          [args.data, "--user-dir", USER_DIR, *extra], parse_known=True)
    except SystemExit:
        why = stderr.getvalue().strip().splitlines()[-1].partition("error: ")[2]
        raise BenchError(f"--generate-args: fairseq-generate refuses {args.generate_args!r}: {why}") from None
    if unknown:
        raise BenchError(f"--generate-args: fairseq-generate does not know {' '.join(unknown)}")
    default = options.parse_args_and_arch(options.get_generation_parser(), [args.data, "--user-dir", USER_DIR])
    for flag, (name, why) in REFUSED.items():
        if getattr(parsed, name) != getattr(default, name):
            raise BenchError(f"--generate-args: {flag} is refused: {why}; drop it")
    task = [v for k, v in zip(extra, extra[1:] + [""]) if k == "--task"] + [
        t.partition("=")[2] for t in extra if t.startswith("--task=")]
    if args.shortlist and any(t != "distillation" for t in task):
        raise BenchError(f"--generate-args: --task {task[-1]} with --shortlist: the shortlist rows decode with "
                         "--task distillation (which loads any translation checkpoint); drop --task")
    return extra, parsed


def language_settings(args, parsed):
    """A multilingual task's language token settings (multilingual.token_settings) when --generate-args
    names one, whose every --lang-pairs pair is then benched; None for a bilingual data-bin."""
    if not str(parsed.task).endswith("multi_simple_epoch"):
        return None
    if args.shortlist:
        raise BenchError("--shortlist is bilingual only (a shortlist maps one source language to one target)")
    if parsed.source_lang or parsed.target_lang:
        raise BenchError("--generate-args: -s/-t with a multilingual task: bench decodes every pair of --lang-pairs "
                         "in turn; give --lang-pairs with the pairs to bench")
    return multilingual.token_settings(parsed)


def parse_models(specs):
    """{name: [path of each seed]}, in the order the names first appear."""
    models = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise BenchError(f"--model {spec!r}: write NAME=CHECKPOINT, e.g. --model teacher=checkpoints/teacher.pt")
        if not (os.path.isfile(path) or ct2.is_model_dir(path)):
            raise BenchError(f"--model {name}: {path} is neither a checkpoint file nor a CTranslate2 model folder")
        models.setdefault(name, []).append(path)
    return models


def compute_types(specs, models, plain_of):
    """{row: compute type} of every CTranslate2 row (and its shortlist rows) from --ct2-compute-type."""
    default, given = "default", {}
    for spec in specs:
        row, sep, kind = spec.rpartition("=")  # a name holds no '=' (--model splits at its first)
        if kind not in ct2.COMPUTE_TYPES:
            raise BenchError(f"--ct2-compute-type {spec!r}: {kind!r} is not one of {', '.join(ct2.COMPUTE_TYPES)}")
        if not sep:
            default = kind
        elif row not in models or row in plain_of:
            raise BenchError(f"--ct2-compute-type {spec!r}: no --model named {row!r}; the rows are "
                             f"{[n for n in models if n not in plain_of]}")
        elif not ct2.is_model_dir(models[row][0]):
            raise BenchError(f"--ct2-compute-type {spec!r}: {row} is a fairseq row; it decodes as --generate-args say")
        else:
            given[row] = kind
    return {name: given.get(plain_of.get(name, (name,))[0], default) for name, paths in models.items()
            if ct2.is_model_dir(paths[0])}


def parse_compares(specs, names):
    """[(row, baseline)] of --compare ROW=BASELINE; names hold no '=' (--model splits at its first)."""
    pairs = []
    for spec in specs:
        parts = spec.split("=")
        if len(parts) != 2 or not all(parts):
            raise BenchError(f"--compare {spec!r}: write ROW=BASELINE, two --model names joined by one '='")
        unknown = [n for n in parts if n not in names]
        if unknown:
            raise BenchError(f"--compare {spec!r}: no --model named {unknown[0]!r}; the rows are {names}")
        if parts[0] == parts[1]:
            raise BenchError(f"--compare {spec!r}: a row against itself")
        pairs.append(tuple(parts))
    return pairs


def read_references(paths, test):
    references = [test.targets]
    if paths and test.pair:  # PAIR=FILE, those of this pair
        pair = "-".join(test.pair)
        if any("=" not in p for p in paths):
            raise BenchError("--references with a multilingual task: write SRC-TGT=FILE, e.g. "
                             f"--references {pair}=test.{test.tgt}")
        paths = [p.partition("=")[2] for p in paths if p.partition("=")[0] == pair]
    if paths:
        references = [open(r, encoding="utf-8").read().splitlines() for r in paths]
        for path, lines in zip(paths, references):
            if len(lines) != len(test):
                raise BenchError(f"--references {path} has {len(lines)} lines, the '{test.subset}' split {len(test)}")
    return references


def run(args):
    plain = parse_models(args.model)
    specs = bench_shortlist.parse(args.shortlist)
    models, plain_of = bench_shortlist.expand(plain, specs)  # each model followed by its shortlist rows
    compares = parse_compares(args.compare, list(models))
    compute_types(args.ct2_compute_type, models, plain_of)  # checked before decoding
    if args.focus is not None and args.focus not in models:
        raise BenchError(f"--focus {args.focus!r}: no --model of that name; the rows are {list(models)}")
    if args.repeats < 1:
        raise BenchError("--repeats must be at least 1")
    extra, parsed = generate_args(args)
    langtoks = language_settings(args, parsed)
    if langtoks is None:
        return bench(args, models, plain, plain_of, specs, compares, extra,
                     TestSet(args.data, args.gen_subset, args.post_process, options=parsed), args.output_dir)
    tests = {"-".join(pair): TestSet(args.data, args.gen_subset, args.post_process, pair, langtoks, parsed)
             for pair in multilingual.pairs(langtoks)}
    unknown = {p.partition("=")[0] for p in args.references or []} - set(tests)
    if unknown:
        raise BenchError(f"--references {sorted(unknown)[0]}=...: not a pair of --lang-pairs ({', '.join(tests)})")
    for test in tests.values():  # every pair's references checked before any decoding
        read_references(args.references, test)
    reports = {}
    for name, test in tests.items():
        print(f"| bench: pair {name}", file=sys.stderr, flush=True)
        reports[name] = bench(args, models, plain, plain_of, specs, compares, extra, test,
                              os.path.join(args.output_dir, name))
    report = {"pairs": reports, "average": evaluation.average_over_pairs(reports)}
    table = pairs_table(report)
    with open(os.path.join(args.output_dir, "bench.md"), "w") as f:
        f.write(table)
    with open(os.path.join(args.output_dir, "bench.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(table)
    return report


def bench(args, models, plain, plain_of, specs, compares, extra, test, output_dir):
    """One test set's bench (a multilingual data-bin's: one pair's) into `output_dir`."""
    device = "cpu" if args.cpu or not torch.cuda.is_available() else "cuda"
    alike = Settings(args.beam, args.lenpen, args.batch_size, args.max_len_a, args.max_len_b, args.min_len,
                     args.threads, device, tuple(extra))
    references = read_references(args.references, test)
    bench_shortlist.check(specs, args.data, args.gen_subset, test.src, test.tgt, args.batch_size)  # before decoding
    rows = bench_shortlist.decoders(models, plain_of, alike, output_dir)
    kinds = compute_types(args.ct2_compute_type, models, plain_of)
    for name, kind in kinds.items():
        for decoder in rows[name]:
            decoder.settings = dataclasses.replace(decoder.settings, compute_type=kind)
    sizes = {name: decoders[0].size() for name, decoders in rows.items()}
    engines = {name: "ctranslate2" if ct2.is_model_dir(paths[0]) else "fairseq" for name, paths in models.items()}
    focus = args.focus or next((n for n in reversed(plain) if engines[n] == "fairseq"), None)
    seeds, timed = decode_rows(rows, test, args.repeats,
                               log=lambda line: print(f"| bench: {line}", file=sys.stderr, flush=True))
    scorer = evaluation.Scorer(references, args.tokenize, args.lowercase)
    compares = compares + [(row, name) for row, (name, _) in plain_of.items() if (row, name) not in compares]
    scored, sources, sentence_chrf = evaluation.score_bench(
        models, seeds, timed, sizes, engines, test, scorer,
        test.length_limits(args.batch_size, args.max_len_a, args.max_len_b), compares, focus)
    bench_shortlist.annotate(scored, specs, plain_of, args.batch_size)
    signatures = scorer.signatures
    settings = {
        "data": args.data, "pair": "-".join(test.pair) if test.pair else None, "gen_subset": args.gen_subset,
        "sentences": len(test), "beam": args.beam, "lenpen": args.lenpen, "batch_size": args.batch_size, "max_len_a": args.max_len_a,
        "max_len_b": args.max_len_b, "min_len": args.min_len, "repeats": args.repeats, "threads": args.threads,
        "device": device, "generate_args": extra, "shortlists": [s.path for s in specs], "timed": TIMED,
        "ct2_compute_types": kinds,
        "sacrebleu": signatures["bleu"], "sacrebleu_chrf": signatures["chrf"],
        "bootstrap_samples": evaluation.BOOTSTRAP_SAMPLES,
        "generate_args_note": "given to the fairseq rows only; CTranslate2 rows do not get them, but follow "
                              "their -s/-t and --tokenizer/--bpe"}
    settings.update(provenance.record(output_dir, test.sources, references, models))  # what fairseq-wd-merge checks
    report = {"settings": settings, **scored}
    os.makedirs(output_dir, exist_ok=True)
    for name, decoded in seeds.items():
        for k, d in enumerate(decoded, 1):
            with open(os.path.join(output_dir, f"{name}.hyp" if k == 1 else f"{name}.seed{k}.hyp"), "w",
                      encoding="utf-8") as f:
                f.writelines(h + "\n" for h in d.hypotheses)
    evaluation.write_sentences(os.path.join(output_dir, "sentences.tsv"), sources, references[0],
                               {name: d[0].hypotheses for name, d in seeds.items()}, sentence_chrf)
    table = markdown_table(report)
    with open(os.path.join(output_dir, "bench.md"), "w") as f:
        f.write(table)
    with open(os.path.join(output_dir, "bench.json"), "w") as f:
        json.dump(report, f, indent=2)
    plot(report, os.path.join(output_dir, "bench.png"))
    print(table)
    return report


def main(argv=None):
    parser = get_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)} (fairseq-generate options go in "
                     "--generate-args='...', which CTranslate2 rows do not get)")
    try:
        run(args)
    except (BenchError, DecodingError, CheckpointError, ct2.DeployError, sl.VmapError) as e:
        sys.exit(f"fairseq-wd-bench: error: {e}")


if __name__ == "__main__":
    main()
