"""`fairseq-wd-bench`: BLEU and decoding speed of several checkpoints under identical settings.

Each model is decoded by `fairseq-generate` itself (beam 6, lenpen 1.0, batch 64 by default, as the
WD authors; same threads for all), `--repeats` times with the models interleaved, so machine drift
hits every model alike; speed is the median of fairseq-generate's own timer. A CTranslate2 folder
(`fairseq-wd-export --to ctranslate2`) is decoded by CTranslate2 with the same beam, length penalty,
batches, length limits (--max-len-a/-b, --min-len) and threads, timed around its translate calls.
Every test sentence must get a hypothesis. Hypotheses are scored with sacrebleu (signature printed)
against the raw references (`--references`) or the post-processed targets of the data-bin.

    fairseq-wd-bench data-bin --model teacher=teacher.pt --model wd=student.pt \\
        --references raw/test.ro --output-dir bench/ [--cpu] [--generate-args='--nbest 1']

Options bench does not know are refused (a typo would otherwise go unnoticed); other fairseq-generate
options go in --generate-args, which only the fairseq rows get. The first model is the reference
for speed-up and size ratio. Writes bench.md, bench.json, bench.png (with matplotlib) and NAME.hyp
per model to --output-dir.
"""
import argparse
import contextlib
import io
import json
import os
import shlex
import statistics
import sys

import sacrebleu
import torch

from fairseq import options

from ..checkpoints import CheckpointError
from ..decoding import USER_DIR, DecodingError, Settings, TestSet, decoder_for
from ..deploy import ct2
from .bench_report import markdown_table, plot

# fairseq-generate options that bench sets for every row (CTranslate2's included): the bench option to use
OWNED = {"--path": "--model", "--gen-subset": "--gen-subset", "--beam": "--beam", "--lenpen": "--lenpen",
         "--batch-size": "--batch-size", "--max-sentences": "--batch-size", "--max-len-a": "--max-len-a",
         "--max-len-b": "--max-len-b", "--min-len": "--min-len", "--post-process": "--post-process",
         "--remove-bpe": "--post-process", "--cpu": "--cpu", "--user-dir": None}


class BenchError(RuntimeError):
    pass


def get_parser():
    p = argparse.ArgumentParser(prog="fairseq-wd-bench", description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="the binarized data-bin (fairseq-preprocess output) holding --gen-subset")
    p.add_argument("--model", action="append", required=True, metavar="NAME=CHECKPOINT",
                   help="a model to decode: a fairseq checkpoint, or a CTranslate2 folder (fairseq-wd-export "
                        "--to ctranslate2), decoded with the same settings; repeat. The first is the reference")
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
                        "for multiple references (NIST). Default: the data-bin targets, post-processed")
    p.add_argument("--tokenize", default="13a", help="sacrebleu tokenizer (13a; zh for Chinese targets)")
    p.add_argument("--lowercase", action="store_true", help="case-insensitive BLEU (as NIST Zh-En is reported)")
    p.add_argument("--output-dir", default="bench", help="where bench.md / .json / .png go (default: bench)")
    p.add_argument("--generate-args", default="", metavar="'OPTIONS'",
                   help="more fairseq-generate options in one string, e.g. --generate-args='--unkpen 1'. "
                        "Only the fairseq rows get them, CTranslate2 rows do not; options bench sets itself "
                        "(--beam, --batch-size, ...) are refused here")
    return p


def generate_args(args):
    """--generate-args as a list, checked before anything is decoded: no option bench sets for every
    row (a CTranslate2 row would not follow it), none fairseq-generate does not know."""
    extra = shlex.split(args.generate_args)
    for token in extra:
        name = token.split("=")[0]
        if name in OWNED:
            use = f"use fairseq-wd-bench's {OWNED[name]}" if OWNED[name] else "fairseq-wd-bench passes the plugin's"
            raise BenchError(f"--generate-args: {name} is set by fairseq-wd-bench for every row; {use}")
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            _, unknown = options.parse_args_and_arch(options.get_generation_parser(),
                                                     [args.data, "--user-dir", USER_DIR, *extra], parse_known=True)
    except SystemExit:
        why = stderr.getvalue().strip().splitlines()[-1].partition("error: ")[2]
        raise BenchError(f"--generate-args: fairseq-generate refuses {args.generate_args!r}: {why}") from None
    if unknown:
        raise BenchError(f"--generate-args: fairseq-generate does not know {' '.join(unknown)}")
    return extra


def parse_models(specs):
    models = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise BenchError(f"--model {spec!r}: write NAME=CHECKPOINT, e.g. --model teacher=checkpoints/teacher.pt")
        if not (os.path.isfile(path) or ct2.is_model_dir(path)):
            raise BenchError(f"--model {name}: {path} is neither a checkpoint file nor a CTranslate2 model folder")
        models.append((name, path))
    if len({n for n, _ in models}) != len(models):
        raise BenchError("--model names must be unique")
    return models


def run(args):
    models = parse_models(args.model)
    extra = generate_args(args)
    device = "cpu" if args.cpu or not torch.cuda.is_available() else "cuda"
    alike = Settings(args.beam, args.lenpen, args.batch_size, args.max_len_a, args.max_len_b, args.min_len,
                     args.threads, device, tuple(extra))
    decoders = {name: decoder_for(path, alike) for name, path in models}
    test = TestSet(args.data, args.gen_subset, args.post_process)
    expected = len(test)
    references = [test.targets]
    if args.references:
        references = [open(r, encoding="utf-8").read().splitlines() for r in args.references]
        for path, lines in zip(args.references, references):
            if len(lines) != expected:
                raise BenchError(f"--references {path} has {len(lines)} lines, the '{args.gen_subset}' split {expected}")
    sizes = {name: decoder.size() for name, decoder in decoders.items()}
    runs = {name: [] for name in decoders}
    hypotheses = {}
    for r in range(args.repeats):
        for name, decoder in decoders.items():
            print(f"| bench: run {r + 1}/{args.repeats}, {name}", file=sys.stderr, flush=True)
            hyps, sent_s, tok_s = decoder.translate(test)
            if len(hyps) != expected:
                missing = sorted(set(range(expected)) - set(hyps))[:10]
                raise BenchError(f"{name}: {len(hyps)} hypotheses for {expected} sentences (missing ids "
                                 f"{missing}...); is --max-source-positions too small for the test set?")
            runs[name].append((sent_s, tok_s))
            hypotheses.setdefault(name, [hyps[i] for i in range(expected)])
    os.makedirs(args.output_dir, exist_ok=True)
    rows, signature = [], None
    for name, path in models:
        bleu = sacrebleu.BLEU(tokenize=args.tokenize, lowercase=args.lowercase)
        score = bleu.corpus_score(hypotheses[name], references)
        signature = str(bleu.get_signature())
        with open(os.path.join(args.output_dir, f"{name}.hyp"), "w", encoding="utf-8") as f:
            f.writelines(h + "\n" for h in hypotheses[name])
        params, weights = sizes[name]
        rows.append({"name": name, "path": path, "params": params, "weights_bytes": weights,
                     "weights_mb": round(weights / 2 ** 20, 2),
                     "bleu": round(score.score, 2),
                     "sentences_per_s": statistics.median(s for s, _ in runs[name]),
                     "tokens_per_s": statistics.median(t for _, t in runs[name]),
                     "runs": [{"sentences_per_s": s, "tokens_per_s": t} for s, t in runs[name]]})
    ref = rows[0]
    for row in rows:
        row["speedup"] = round(row["sentences_per_s"] / ref["sentences_per_s"], 2)
        row["size_ratio"] = round(row["params"] / ref["params"], 2) if row["params"] and ref["params"] else None
        row["bleu_vs_first"] = round(row["bleu"] - ref["bleu"], 2)
    settings = {"data": args.data, "gen_subset": args.gen_subset, "sentences": expected, "beam": args.beam,
                "lenpen": args.lenpen, "batch_size": args.batch_size, "max_len_a": args.max_len_a,
                "max_len_b": args.max_len_b, "min_len": args.min_len, "repeats": args.repeats,
                "threads": args.threads, "device": device,
                "generate_args": extra, "sacrebleu": signature,
                "generate_args_note": "given to the fairseq rows only; CTranslate2 rows do not get them"}
    report = {"settings": settings, "models": rows}
    table = markdown_table(report)
    with open(os.path.join(args.output_dir, "bench.md"), "w") as f:
        f.write(table)
    with open(os.path.join(args.output_dir, "bench.json"), "w") as f:
        json.dump(report, f, indent=2)
    plot(report, os.path.join(args.output_dir, "bench.png"))
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
    except (BenchError, DecodingError, CheckpointError, ct2.DeployError) as e:
        sys.exit(f"fairseq-wd-bench: error: {e}")


if __name__ == "__main__":
    main()
