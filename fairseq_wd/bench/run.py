"""One bench run: the options checked before any decoding, every row decoded alike (decoding.py),
scored (scoring.py) and reported (report.py) into an output folder, for a data-bin's one pair or for every
pair of a multilingual task. `fairseq-wd-bench` (cli/bench.py) parses the options over `run`."""
import contextlib
import dataclasses
import io
import json
import os
import shlex
import sys

import torch
from fairseq import options

from .. import languages
from ..export import ct2
from . import provenance, scoring, shortlist_rows
from .decoding import TIMED, USER_DIR, Settings, decode_rows
from .report import markdown_table, pairs_table, plot
from .testset import TestSet


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
    if args.shortlist and parsed.task not in (default.task, "distillation"):
        raise BenchError(f"--generate-args: --task {parsed.task} with --shortlist: the shortlist rows decode with "
                         "--task distillation (which loads any translation checkpoint); drop --task")
    return extra, parsed


def language_settings(args, parsed):
    """A multilingual task's language token settings (languages.token_settings) when --generate-args
    names one, whose every --lang-pairs pair is then benched; None for a bilingual data-bin."""
    if not str(parsed.task).endswith("multi_simple_epoch"):
        return None
    if args.shortlist:
        raise BenchError("--shortlist is bilingual only (a shortlist maps one source language to one target)")
    if parsed.source_lang or parsed.target_lang:
        raise BenchError("--generate-args: -s/-t with a multilingual task: bench decodes every pair of --lang-pairs "
                         "in turn; give --lang-pairs with the pairs to bench")
    return languages.token_settings(parsed)


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
    specs = shortlist_rows.parse(args.shortlist)
    models, plain_of = shortlist_rows.expand(plain, specs)  # each model followed by its shortlist rows
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
             for pair in languages.pairs(langtoks)}
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
    report = {"pairs": reports, "average": scoring.average_over_pairs(reports)}
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
    shortlist_rows.check(specs, args.data, args.gen_subset, test.src, test.tgt, args.batch_size)  # before decoding
    rows = shortlist_rows.decoders(models, plain_of, alike, output_dir)
    kinds = compute_types(args.ct2_compute_type, models, plain_of)
    for name, kind in kinds.items():
        for decoder in rows[name]:
            decoder.settings = dataclasses.replace(decoder.settings, compute_type=kind)
    sizes = {name: decoders[0].size() for name, decoders in rows.items()}
    engines = {name: "ctranslate2" if ct2.is_model_dir(paths[0]) else "fairseq" for name, paths in models.items()}
    focus = args.focus or next((n for n in reversed(plain) if engines[n] == "fairseq"), None)
    seeds, timed = decode_rows(rows, test, args.repeats,
                               log=lambda line: print(f"| bench: {line}", file=sys.stderr, flush=True))
    scorer = scoring.Scorer(references, args.tokenize, args.lowercase)
    compares = compares + [(row, name) for row, (name, _) in plain_of.items() if (row, name) not in compares]
    scored, sources, sentence_chrf = scoring.score_bench(
        models, seeds, timed, sizes, engines, test, scorer,
        test.length_limits(args.batch_size, args.max_len_a, args.max_len_b), compares, focus)
    shortlist_rows.annotate(scored, specs, plain_of, args.batch_size)
    signatures = scorer.signatures
    settings = {
        "data": args.data, "pair": "-".join(test.pair) if test.pair else None, "gen_subset": args.gen_subset,
        "sentences": len(test), "beam": args.beam, "lenpen": args.lenpen, "batch_size": args.batch_size, "max_len_a": args.max_len_a,
        "max_len_b": args.max_len_b, "min_len": args.min_len, "repeats": args.repeats, "threads": args.threads,
        "device": device, "generate_args": extra, "shortlists": [s.path for s in specs], "timed": TIMED,
        "ct2_compute_types": kinds,
        "sacrebleu": signatures["bleu"], "sacrebleu_chrf": signatures["chrf"],
        "bootstrap_samples": scoring.BOOTSTRAP_SAMPLES,
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
    scoring.write_sentences(os.path.join(output_dir, "sentences.tsv"), sources, references[0],
                               {name: d[0].hypotheses for name, d in seeds.items()}, sentence_chrf)
    table = markdown_table(report)
    with open(os.path.join(output_dir, "bench.md"), "w") as f:
        f.write(table)
    with open(os.path.join(output_dir, "bench.json"), "w") as f:
        json.dump(report, f, indent=2)
    plot(report, os.path.join(output_dir, "bench.png"))
    print(table)
    return report
