"""Decoding speed at the WD paper's sizes, without training: students against their own teacher.

Random-weight models with a 32k joint vocabulary, built by fairseq from the plugin's archs and saved
as ordinary checkpoints: the base teacher (6-6, 512/2048), the big one (6-6, 1024/4096, 16 heads)
and, of each, the TINY (6-1, decoder at half the encoder's width) and SMALL (6-2) students; plus
CTranslate2 int8 copies (`fairseq-wd-export --to ctranslate2`). A synthetic data-bin (the 32k
dictionary, --sentences sources of 15-35 tokens, seeded) is decoded by `fairseq-wd-bench` with
every output forced to --length tokens (--min-len L --max-len-a 0 --max-len-b L), beam 6, batch 64,
on the CPU, --repeats interleaved runs, medians: with random weights only model cost enters, and
BLEU means nothing.

    python examples/benchmarks/paper_speed.py --work-dir runs/paper_speed                 # all six
    python examples/benchmarks/paper_speed.py --models base --sentences 16 --repeats 1    # a quick look
    python examples/benchmarks/paper_speed.py --models base --candidates                  # no shortlist rows

Targets (issue 11) on the 2-core CPU: TINY of base >= 3.5x the base teacher in fairseq, >= 6x
through CTranslate2 int8 (checked both against the CTranslate2 teacher and against the fairseq one).
--profile splits where fairseq's decoding time goes for each fairseq model: encoder, decoder layers,
output projection, log-softmax, the decoder's embeddings and norms, cache reordering, and beam
search with the rest of the generator (top-k, finalizing hypotheses).

Shortlists (--candidates, default 1000 2000 4000): every model also decoded with a synthetic vmap.txt
whose batch of 64 has about that many candidate targets of the 32k (fairseq: --task distillation
--shortlist; CTranslate2 int8: use_vmap), as `fairseq-wd-bench --shortlist` does. With random tokens a
real IBM-1 shortlist means nothing, so the file is built to a size (`synthetic_vmap`): 100 targets always
allowed, and per source token k random targets of a pool of N - 104, k chosen so that the ~1560
distinct source tokens of a batch of 64 cover about 99% of the pool; the bench measures the mean
candidate set actually reached. With --profile, each fairseq model is profiled with the smallest too.
Writes speed.md to --work-dir; models, data and shortlists are kept there and reused.
"""
import argparse
import json
import math
import os
import random
import subprocess
import sys
import time

import torch

import fairseq_wd  # noqa: F401  (registers the wd_* archs)
from fairseq import checkpoint_utils, options, tasks
from fairseq.data import Dictionary, indexed_dataset
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq_wd.datasets import data_bin
from fairseq_wd.shortlist import vmap as sl
from fairseq_wd.shortlist import generator as shortlist_generator
from fairseq_wd.checkpoints import save_plain_transformer
from fairseq_wd.export import ct2

USER_DIR = os.path.dirname(os.path.abspath(fairseq_wd.__file__))
BIG = ["--encoder-embed-dim", "1024", "--encoder-ffn-embed-dim", "4096", "--encoder-attention-heads", "16"]
# name: (teacher, arch, dimensions); TINY derives its decoder (half the encoder's width) from these
MODELS = {
    "base": ("base", "wd_transformer_base", []),
    "base TINY": ("base", "wd_transformer_tiny", []),
    "base SMALL": ("base", "wd_transformer_small", []),
    "big": ("big", "wd_transformer_big", []),
    "big TINY": ("big", "wd_transformer_tiny", BIG),
    "big SMALL": ("big", "wd_transformer_small", BIG),
}
PARTS = ["encoder", "decoder layers", "output projection", "log-softmax", "embeddings, norms",
         "cache reordering", "beam search, rest"]


def sh(*cmd):
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run(list(map(str, cmd)), check=True)


def make_data(dest, sentences, vocab=32000, seed=1):
    """A joint dictionary of `vocab` entries (fairseq's 4 specials included) and a binarized test
    split, src -> tgt, of random tokens: lengths 15-35, as news sentences in 32k subwords."""
    os.makedirs(dest, exist_ok=True)
    d = Dictionary()
    for i in range(vocab - len(d)):
        d.add_symbol(f"w{i}", n=1000)
    for lang in ("src", "tgt"):
        d.save(os.path.join(dest, f"dict.{lang}.txt"))
    rng = random.Random(seed)
    for lang in ("src", "tgt"):
        prefix = os.path.join(dest, f"test.src-tgt.{lang}")
        builder = indexed_dataset.make_builder(prefix + ".bin", impl="mmap", vocab_size=len(d))
        for _ in range(sentences):
            ids = [rng.randrange(d.nspecial, len(d)) for _ in range(rng.randint(15, 35))]
            builder.add_item(torch.IntTensor(ids + [d.eos()]))
        builder.finalize(prefix + ".idx")


def make_model(path, data, arch, dims, seed=1):
    """fairseq's own model building (parser, arch presets, task dictionaries), random weights, saved
    as a plain `transformer` checkpoint."""
    args = options.parse_args_and_arch(options.get_training_parser(),
                                       [data, "--user-dir", USER_DIR, "--task", "translation", "--arch", arch, *dims])
    torch.manual_seed(seed)
    task = tasks.setup_task(args)
    model = task.build_model(args)
    task_cfg = {"_name": "translation", "data": data, "source_lang": "src", "target_lang": "tgt"}
    save_plain_transformer(path, model.state_dict(), args, task_cfg)
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {path}: {' '.join([arch, *dims])}, {params / 1e6:.1f}M parameters")


def synthetic_vmap(path, data, candidates, batch=64, mean_length=25, always=100, seed=1):
    """A vmap.txt for `data`'s 32k dictionary whose batch of `batch` random sources (~mean_length tokens
    each) has about `candidates` candidate targets: the `always` first targets, and per source token k
    random targets of a pool of the next candidates - always - nspecial, k such that the batch's distinct
    source tokens hit ~99% of the pool (1 - exp(-D k / pool) with D the expected distinct tokens)."""
    if os.path.exists(path):
        return path
    d = Dictionary.load(os.path.join(data, "dict.tgt.txt"))
    regular = list(range(d.nspecial, len(d)))
    pool = regular[always:candidates - d.nspecial]
    distinct = len(regular) * (1 - math.exp(-batch * mean_length / len(regular)))
    k = max(1, math.ceil(4.6 * len(pool) / distinct))
    rng = random.Random(seed)
    rules = {d[s]: [d[t] for t in sorted(rng.sample(pool, k))] for s in regular}
    sl.write_vmap(sl.Vmap(always=[d[t] for t in regular[:always]], rules=rules), path, d, d)
    print(f"wrote {path}: {always} always, {k} of a pool of {len(pool)} per source token")
    return path


def label(candidates):
    return f"{candidates // 1000}k" if candidates % 1000 == 0 else str(candidates)


class PartTimer:
    """Wall time spent in parts of one model while fairseq's SequenceGenerator runs, by wrapping the
    methods the generator calls (CPU ops are synchronous, so wall time is their cost). Nested parts
    are subtracted in `split`."""

    def __init__(self, model, shortlist=False):
        self.seconds = {}
        dec = model.decoder
        if shortlist:  # the candidate rows' projection: the generator shadows output_layer with it per batch
            self.wrap(shortlist_generator, "project", "output projection")
        self.wrap(model.encoder, "forward_torchscript", "encoder")
        self.wrap(dec, "forward", "decoder")
        for layer in dec.layers:
            self.wrap(layer, "forward", "decoder layers")
        self.wrap(dec, "output_layer", "output projection")
        self.wrap(model, "get_normalized_probs", "log-softmax")
        self.wrap(model.encoder, "reorder_encoder_out", "cache reordering")
        self.wrap(dec, "reorder_incremental_state_scripting", "cache reordering")

    def wrap(self, obj, method, part):
        inner = getattr(obj, method)
        self.seconds.setdefault(part, 0.0)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - start

        setattr(obj, method, timed)

    def split(self, total):
        s = dict(self.seconds)
        decoder = s.pop("decoder")
        s["embeddings, norms"] = decoder - s["decoder layers"] - s["output projection"]
        s["beam search, rest"] = total - decoder - sum(
            s[k] for k in ("encoder", "log-softmax", "cache reordering"))
        return s


def profile(path, data, a, vmap=None):
    """One fairseq decoding pass of `path` over the data-bin, set up as fairseq-generate sets it up
    (beam 6, batch 64, outputs of --length tokens; with `vmap`, over its candidates), split into parts:
    (seconds, {part: seconds})."""
    torch.set_num_threads(a.threads)
    L = str(a.length)
    args = options.parse_args_and_arch(options.get_generation_parser(), [
        data, "--user-dir", USER_DIR, "--path", path, "--beam", "6", "--batch-size", "64", "--cpu",
        "--min-len", L, "--max-len-a", "0", "--max-len-b", L,
        *(["--task", "distillation", "--shortlist", vmap] if vmap else [])])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    models, _ = checkpoint_utils.load_model_ensemble([path], task=task)
    models[0].eval()
    task.load_dataset(cfg.dataset.gen_subset, task_cfg=cfg.task)
    generator = task.build_generator(models, cfg.generation)
    batches = task.get_batch_iterator(task.dataset(cfg.dataset.gen_subset), max_sentences=cfg.dataset.batch_size,
                                      required_batch_size_multiple=cfg.dataset.required_batch_size_multiple)
    timer, total = PartTimer(models[0], shortlist=bool(vmap)), 0.0
    with torch.no_grad():
        for sample in batches.next_epoch_itr(shuffle=False):
            start = time.perf_counter()
            task.inference_step(generator, models, sample)
            total += time.perf_counter() - start
    return total, timer.split(total)


def speed_table(rows, names):
    """Speed-ups of each student against its own teacher, fairseq and CTranslate2 int8 alike."""
    fs = {n: rows[n]["sentences_per_s"] for n in names}
    ct = {n: rows[f"{n} (CT2 int8)"]["sentences_per_s"] for n in names}
    lines = ["| model | fairseq sent/s | CT2 int8 sent/s | vs teacher, fairseq | vs teacher, CT2 int8 "
             "| CT2 int8 vs fairseq teacher |", "|---|---|---|---|---|---|"]
    for n in names:
        t = MODELS[n][0]
        lines.append(f"| {n} | {fs[n]:.2f} | {ct[n]:.2f} | {fs[n] / fs[t]:.2f}x | {ct[n] / ct[t]:.2f}x "
                     f"| {ct[n] / fs[t]:.2f}x |")
    if "base TINY" in names:
        def check(target, got, against):
            return f"- TINY >= {target}x the base teacher{against}: {got:.2f}x, {'met' if got >= target else 'MISSED'}"

        fs_ref, ct_ref = fs["base"], ct["base"]
        lines += ["", "Targets (issue 11):", check(3.5, fs["base TINY"] / fs_ref, ", both in fairseq"),
                  check(6, ct["base TINY"] / ct_ref, ", both through CTranslate2 int8"),
                  check(6, ct["base TINY"] / fs_ref, ", TINY through CTranslate2 int8 against the fairseq teacher")]
    return lines


def shortlist_table(report, names, candidates):
    """Per engine, each model's sentences/s without and with each shortlist (and the speed-up over itself
    without), the candidate sets the bench measured, and the targets read with the shortlist."""
    rows = {m["name"]: m for m in report["models"]}
    sizes = {s["label"]: s for s in report["shortlists"]}
    labels = [label(c) for c in candidates]
    lines = ["Shortlists: mean candidate set per batch of 64 (measured by the bench): " + ", ".join(
        f"{x}: {sizes[x]['candidates_mean']:.0f} of {sizes[x]['vocab_size']} ({sizes[x]['candidates_share']:.1%})"
        for x in labels) + ". sentences/s, and the speed-up over the same model without a shortlist:", "",
             "| model | engine | no shortlist | " + " | ".join(f"+ shortlist {x}" for x in labels) + " |",
             "|---|---|---|" + "---|" * len(labels)]
    for engine, suffix in (("fairseq", ""), ("CT2 int8", " (CT2 int8)")):
        for n in names:
            plain = rows[n + suffix]["sentences_per_s"]
            cells = [f"{rows[f'{n}{suffix} + shortlist {x}']['sentences_per_s']:.2f} "
                     f"({rows[f'{n}{suffix} + shortlist {x}']['sentences_per_s'] / plain:.2f}x)" for x in labels]
            lines.append(f"| {n} | {engine} | {plain:.2f} | " + " | ".join(cells) + " |")
    if "base TINY" in names:
        teacher = rows["base"]["sentences_per_s"]
        lines += ["", "TINY with a shortlist against the plain fairseq base teacher (targets 3.5x in fairseq, "
                      "6x through CTranslate2 int8):"]
        for x in labels:
            fs = rows[f"base TINY + shortlist {x}"]["sentences_per_s"] / teacher
            ct = rows[f"base TINY (CT2 int8) + shortlist {x}"]["sentences_per_s"] / teacher
            lines.append(f"- shortlist {x}: fairseq {fs:.2f}x ({'met' if fs >= 3.5 else 'MISSED'}), "
                         f"CT2 int8 {ct:.2f}x ({'met' if ct >= 6 else 'MISSED'})")
    return lines


def profile_table(models, data, a, vmaps=()):
    """Why a student is not faster: the parts of each fairseq model's decoding time (and with the first
    of `vmaps`, (label, path), where the shortlist moves it)."""
    lines = ["| model | seconds | " + " | ".join(PARTS) + " |", "|---|---|" + "---|" * len(PARTS)]
    for name, path in models.items():
        if not ct2.is_model_dir(path):
            for suffix, vmap in [("", None), *[(f" + shortlist {x}", v) for x, v in vmaps[:1]]]:
                total, split = profile(path, data, a, vmap)
                shares = " | ".join(f"{100 * split[k] / total:.0f}%" for k in PARTS)
                lines.append(f"| {name}{suffix} | {total:.1f} | {shares} |")
    return ["Where fairseq's decoding time goes (one pass, same data and settings; share of the wall time):", "",
            *lines]


def prepare(a, names):
    """The data-bin and {row name: checkpoint or CTranslate2 folder}, made once and reused."""
    data = os.path.join(a.work_dir, f"data-bin-{a.sentences}")
    if not os.path.exists(os.path.join(data, "test.src-tgt.tgt.idx")):
        make_data(data, a.sentences)
    models = {}
    for n in names:
        path = os.path.join(a.work_dir, "models", n.replace(" ", "_") + ".pt")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.exists(path):
            make_model(path, data, *MODELS[n][1:])
        out = os.path.join(a.work_dir, "ct2", n.replace(" ", "_"))
        if not os.path.exists(os.path.join(out, "model.bin")):
            sh(os.path.join(os.path.dirname(sys.executable), "fairseq-wd-export"), path, "--to", "ctranslate2",
               "--quantization", "int8", "--data", data, "--output", out)
        models[n], models[f"{n} (CT2 int8)"] = path, out
    return data, models


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=["base", "big"], default=["base", "big"],
                   help="teachers whose family (teacher, TINY, SMALL) to measure (default: both)")
    p.add_argument("--sentences", type=int, default=512, help="source sentences to decode (default 512)")
    p.add_argument("--length", type=int, default=30, help="every output is forced to this many tokens (default 30)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timed runs; speed is the median (default 3)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads (default: torch's)")
    p.add_argument("--profile", action="store_true", help="also split fairseq's decoding time into parts, per model")
    p.add_argument("--candidates", type=int, nargs="*", default=[1000, 2000, 4000],
                   help="shortlist rows: a synthetic vmap per size, about that many candidate targets per batch "
                        "of 64 (default 1000 2000 4000; none: no shortlist rows)")
    p.add_argument("--work-dir", default="runs/paper_speed")
    a = p.parse_args(argv)
    if any(not 200 <= c <= 32000 for c in a.candidates):
        p.error("--candidates: sizes between 200 and 32000")
    names = [n for n in MODELS if MODELS[n][0] in a.models]
    data, models = prepare(a, names)
    vmaps = [(label(c), synthetic_vmap(os.path.join(a.work_dir, f"vmap-{c}.txt"), data, c)) for c in a.candidates]
    bench = os.path.join(a.work_dir, "bench")
    started, load = time.time(), os.getloadavg()[0]  # other processes on the CPU slow small ops most
    sh(sys.executable, "-m", "fairseq_wd.cli.bench", data, *[f"--model={n}={p}" for n, p in models.items()],
       *[f"--shortlist={x}={v}" for x, v in vmaps],
       "--post-process", "none", "--cpu", "--threads", a.threads, "--repeats", a.repeats,
       "--min-len", a.length, "--max-len-a", 0, "--max-len-b", a.length, "--output-dir", bench)
    report = json.load(open(os.path.join(bench, "bench.json")))
    rows = {m["name"]: m for m in report["models"]}
    lines = [f"Decoding speed at the WD paper's sizes: random weights, 32k joint vocabulary, {a.sentences} sentences "
             f"of 15-35 tokens, every output {a.length} tokens, beam 6, batch 64, CPU, {a.threads} threads, "
             f"median of {a.repeats} interleaved runs (bench took {(time.time() - started) / 60:.1f} min; "
             f"load average {load:.1f} when it started).", "", *speed_table(rows, names)]
    if vmaps:
        lines += ["", *shortlist_table(report, names, a.candidates)]
    if a.profile:
        lines += ["", *profile_table(models, data, a, vmaps)]
    report = "\n".join(lines) + "\n"
    print("\n" + report)
    with open(os.path.join(a.work_dir, "speed.md"), "w") as f:
        f.write(report)


if __name__ == "__main__":
    main()
