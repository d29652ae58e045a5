"""Decoding a test set with a model, timed: a fairseq checkpoint by `fairseq-generate` itself, a
CTranslate2 folder by CTranslate2 with the same beam, length penalty, batches, length limits and
threads, so that their hypotheses and speeds compare.

Both decode their first batch once untimed before the clock starts: a fresh process (or translator)
pays one-time costs there (allocations, kernel and thread-pool set-up) that a running server does
not, and they would weigh most on the fastest model. `python -m fairseq_wd.decoding ARGS` is
fairseq-generate with that warm-up and its own per-batch meter (`warm_generate`). Both clocks time the
same work (TIMED).
"""
import argparse
import dataclasses
import os
import re
import subprocess
import sys
import time

import numpy as np
import torch
from fairseq.data import data_utils

from . import multilingual
from .checkpoints import CheckpointError, load_state, model_args
from .deploy import ct2

USER_DIR = os.path.dirname(os.path.abspath(__file__))
WARMUP, BATCH = "fairseq-wd warm-up seconds:", "fairseq-wd batch seconds, tokens:"
TIMED = ("per batch, fairseq-generate's generator on the collated batch (batches loaded in the decoding process, "
         "--num-workers 0, off the clock) and CTranslate2's translate_batch on the batch's token lists (built before "
         "the clock; the call includes CTranslate2's token-to-id and id-to-token lookups, as it takes and returns "
         "strings); printing and scoring the hypotheses are off both clocks")


class DecodingError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every decoder follows alike, so that rows differ by the model only. `generate_args`:
    further fairseq-generate options, which CTranslate2 cannot follow; `compute_type`: the CTranslate2 rows'
    (ctranslate2.Translator's), which fairseq rows ignore."""
    beam: int
    lenpen: float
    batch_size: int
    max_len_a: float
    max_len_b: int
    min_len: int
    threads: int
    device: str  # "cpu" or "cuda"
    generate_args: tuple = ()
    compute_type: str = "default"


@dataclasses.dataclass
class Decoded:
    """One decoding of the test set. `lengths`: output tokens without </s>, as the length limits count
    them; `warmup_s`: the untimed first batch (None where the decoder could not warm up);
    `batch_seconds`: the timed batches, in decoding order."""
    hypotheses: list
    lengths: list
    sentences_per_s: float
    tokens_per_s: float
    warmup_s: float = None
    batch_seconds: list = dataclasses.field(default_factory=list)

    @property
    def first_batch_cost_s(self):
        """What the first batch cost beyond its warm run: the cold start the warm-up keeps off the clock."""
        return self.warmup_s - self.batch_seconds[0] if self.warmup_s is not None and self.batch_seconds else None


def language_pair(data, subset, src=None, tgt=None):
    """(src, tgt, the files' SRC-TGT) of the pair fairseq-generate decodes from `data`'s `subset`: -s/-t when
    given (read from SRC-TGT files, else from TGT-SRC ones, as fairseq's tasks look), else the data-bin's
    only pair (fairseq infers the first pair its folder listing shows: a data-bin with several is refused)."""
    if bool(src) != bool(tgt):
        raise DecodingError("--generate-args gives only one of -s/-t, which fairseq then ignores (it infers both "
                            "from the data-bin): give both, e.g. --generate-args='-s SRC -t TGT'")
    if not src:
        found = sorted({name.split(".")[1] for name in os.listdir(data)
                        if len(name.split(".")) >= 3 and len(name.split(".")[1].split("-")) == 2})
        if len(found) > 1:
            raise DecodingError(f"{data} holds the pairs {', '.join(found)} and fairseq-generate would decode "
                                "whichever its folder listing shows first: name the pair, e.g. "
                                f"--generate-args='-s {found[0].split('-')[0]} -t {found[0].split('-')[1]}'")
        src, tgt = found[0].split("-") if found else (None, None)
    for files in (f"{src}-{tgt}", f"{tgt}-{src}"):
        if src and os.path.isfile(os.path.join(data, f"{subset}.{files}.{src}.idx")):
            return src, tgt, files
    raise DecodingError(f"no binarized '{subset}' split {src or ''}-{tgt or ''} in {data}: run fairseq-preprocess "
                        f"with --{subset}pref")


def output_decoder(options, src, tgt):
    """fairseq-generate's decode_fn for `options` (parsed fairseq-generate args) on the pair src-tgt: its
    --bpe's then its --tokenizer's decode (e.g. Moses detokenization in `tgt`'s rules), or no change."""
    from fairseq.data import encoders

    cfg = argparse.Namespace(**{**vars(options or argparse.Namespace()), "source_lang": src, "target_lang": tgt})
    try:
        bpe, tokenizer = encoders.build_bpe(cfg), encoders.build_tokenizer(cfg)
    except (ImportError, ValueError, OSError) as e:
        raise DecodingError(f"--generate-args: fairseq cannot build --bpe {cfg.bpe} / --tokenizer {cfg.tokenizer} "
                            f"({e}); give what they need, e.g. --bpe subword_nmt --bpe-codes CODES with pip install "
                            "subword-nmt, --tokenizer moses with pip install sacremoses") from e

    def decode(x):
        if bpe is not None:
            x = bpe.decode(x)
        return x if tokenizer is None else tokenizer.decode(x)
    return decode


class TestSet:
    """The data-bin's subset: how many sentences every model must translate, the source pieces
    CTranslate2 decodes and the batches fairseq-generate forms, and the targets as fairseq-generate
    prints them (the default references): post-processed and decoded (`detok`), an unknown word written
    `<<unk>>` as fairseq's own scorer does (tgt_dict.string(..., escape_unk=True)), so that a hypothesis
    printing `<unk>` is not credited."""

    def __init__(self, data, subset, post_process, pair=None, langtoks=None, options=None):
        """`pair`: (src, tgt) of a multilingual data-bin, whose language tokens `langtoks` (the task's
        multilingual.token_settings) add; else the pair of `options`' -s/-t (the parsed fairseq-generate
        args), or the data-bin's only pair (language_pair). `options`' --bpe and --tokenizer decode
        the targets and every decoder's output alike (output_decoder)."""
        from fairseq.data import Dictionary, indexed_dataset

        asked = pair or (getattr(options, "source_lang", None), getattr(options, "target_lang", None))
        self.src, self.tgt, files = language_pair(data, subset, *asked)
        self.data, self.subset, self.post_process = data, subset, post_process
        self.pair = pair
        self.source_prefix, self.target_prefix = multilingual.prefixes(langtoks, *pair) if pair else ([], [])
        self.decode = output_decoder(options, self.src, self.tgt)

        def side(lang, escape_unk):
            d = Dictionary.load(os.path.join(data, f"dict.{lang}.txt"))
            ds = indexed_dataset.make_dataset(os.path.join(data, f"{subset}.{files}.{lang}"), impl="mmap")
            lines = [d.string(ds[i], escape_unk=escape_unk) for i in range(len(ds))]
            return lines, ds.sizes.astype(np.int64)  # with </s>

        sources, self.src_sizes = side(self.src, False)  # CTranslate2 reads <unk> as the unknown token
        self.src_sizes += len(self.source_prefix)  # fairseq's length limits count the language token
        targets, self.tgt_sizes = side(self.tgt, True)
        self.sources = [line.split() for line in sources]
        self.targets = [self.detok(line.split()) for line in targets]

    def __len__(self):
        return len(self.sources)

    def detok(self, pieces):
        """Output pieces as fairseq-generate's D- line writes them: post-processed, then decoded."""
        return self.decode(data_utils.post_process(" ".join(pieces), self.post_process))

    def batches(self, batch_size, required_batch_size_multiple=8):
        """fairseq-generate's batches (LanguagePairDataset.ordered_indices, then batch_by_size with the
        plugin's fix): sorted by source length, ties by target length."""
        order = np.argsort(self.tgt_sizes, kind="mergesort")
        order = order[np.argsort(self.src_sizes[order], kind="mergesort")]
        return [list(b) for b in data_utils.batch_by_size(
            order, None, num_tokens_vec=np.maximum(self.src_sizes, self.tgt_sizes)[order],
            max_sentences=batch_size, required_batch_size_multiple=required_batch_size_multiple)]

    def length_limits(self, batch_size, max_len_a, max_len_b):
        """Each sentence's output limit, as fairseq-generate applies it: int(a * longest source of its batch
        (with </s>) + b) tokens, </s> not counted."""
        limits = [0] * len(self)
        for batch in self.batches(batch_size):
            limit = int(max_len_a * max(self.src_sizes[i] for i in batch) + max_len_b)
            for i in batch:
                limits[i] = limit
        return limits


class Decoder:
    """A model at `path`, decoded under `settings` (which only translate needs); with `shortlist` (a
    vmap.txt, checked already), each batch over its candidate targets only."""

    def __init__(self, path, settings=None, shortlist=None):
        self.path, self.settings, self.shortlist = path, settings, shortlist

    def translate(self, test):
        """A Decoded, one hypothesis per test sentence; tokens per second counted with the end of sentence."""
        raise NotImplementedError

    def size(self):
        """(parameters or None, bytes of the weights), not of the file, which may hold more."""
        raise NotImplementedError

    def complete(self, hyps, test):
        """`hyps` ({id: value}) as a list in test order; every sentence must have one."""
        if len(hyps) != len(test):
            missing = sorted(set(range(len(test))) - set(hyps))[:10]
            raise DecodingError(f"{self.path}: {len(hyps)} hypotheses for {len(test)} sentences (missing ids "
                                f"{missing}...); is --max-source-positions too small for the test set?")
        return [hyps[i] for i in range(len(test))]


# fairseq lists a tied tensor under each of its names; a saved checkpoint may have lost the sharing
TIED = {"share_all_embeddings": ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
                                 "decoder.output_projection.weight"),
        "share_decoder_input_output_embed": ("decoder.embed_tokens.weight", "decoder.output_projection.weight")}


def distinct_weights(state):
    """The checkpoint's weight tensors, each counted once: names sharing a storage (as saved from a model
    with tied embeddings), and the names the model args tie (a copy cast to float16 shares nothing)."""
    weights, seen = {}, set()
    for name, t in state["model"].items():
        if not torch.is_tensor(t) or name.endswith(("version", "_float_tensor")):
            continue
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride())
        if t.numel() and key in seen:
            continue
        seen.add(key)
        weights[name] = t
    try:
        args = vars(model_args(state))
    except CheckpointError:
        args = {}
    for flag, names in TIED.items():
        present = [n for n in names if n in weights]
        if args.get(flag) and present:
            for name in present[1:]:
                if weights[name].shape == weights[present[0]].shape:
                    del weights[name]
    return weights


class FairseqDecoder(Decoder):
    """fairseq-generate in a fresh process on the test set's pair (with the warm-up and the meter of
    `warm_generate`), its batches loaded in that process (--num-workers 0), timed per batch."""

    def translate(self, test):
        s = self.settings
        cmd = [sys.executable, "-m", "fairseq_wd.decoding", test.data, "--user-dir", USER_DIR, "--path", self.path,
               "--gen-subset", test.subset, "--beam", str(s.beam), "--lenpen", str(s.lenpen),
               "--batch-size", str(s.batch_size), "--max-len-a", str(s.max_len_a), "--max-len-b", str(s.max_len_b),
               "--min-len", str(s.min_len), "--post-process", test.post_process, *s.generate_args,
               "--source-lang", test.src, "--target-lang", test.tgt, "--num-workers", "0"]
        if self.shortlist:  # the plugin's task decodes over each batch's candidates; any checkpoint loads in it
            cmd += ["--task", "distillation", "--shortlist", self.shortlist]
        if s.device == "cpu":
            cmd.append("--cpu")
        env = dict(os.environ, OMP_NUM_THREADS=str(s.threads), MKL_NUM_THREADS=str(s.threads))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise DecodingError(f"fairseq-generate failed on {self.path}:\n{proc.stderr[-3000:]}")
        batches = [(float(t), int(n)) for t, n in re.findall(rf"^{BATCH} ([\d.]+) (\d+)$", proc.stderr, re.M)]
        if not batches:
            raise DecodingError(f"fairseq-generate timed no batch for {self.path}:\n{proc.stderr[-3000:]}")
        seconds = [t for t, _ in batches]
        hyps, lengths = {}, {}
        for i, h in re.findall(r"^D-(\d+)\t\S+\t(.*)$", proc.stdout, re.M):
            hyps.setdefault(int(i), h)  # the best, should --nbest print more
        for i, scores in re.findall(r"^P-(\d+)\t(.*)$", proc.stdout, re.M):
            lengths.setdefault(int(i), len(scores.split()) - 1)  # a score per token, </s> included
        warmup = re.search(rf"^{WARMUP} ([\d.]+)$", proc.stderr, re.M)
        return Decoded(self.complete(hyps, test), self.complete(lengths, test), len(test) / sum(seconds),
                       sum(n for _, n in batches) / sum(seconds), float(warmup.group(1)) if warmup else None, seconds)

    def size(self):
        """The parameters at the dtype stored: the file may hold optimizer state or float16 copies."""
        weights = distinct_weights(load_state(self.path)).values()
        return sum(t.numel() for t in weights), sum(t.numel() * t.element_size() for t in weights)


class CTranslate2Decoder(Decoder):
    """CTranslate2 on fairseq-generate's batches, timed around its translate calls; with a shortlist,
    `path` is a folder holding it as vmap.txt (ct2.with_vmap), decoded with use_vmap."""

    def translate(self, test):
        s = self.settings
        langtoks = ct2.languages(self.path)
        if bool(langtoks) != bool(test.pair):
            raise DecodingError(f"{self.path} is a {'multilingual' if langtoks else 'bilingual'} CTranslate2 model, "
                                f"the test set {'one pair of a multilingual' if test.pair else 'a bilingual'} data-bin")
        source_prefix, target_prefix = multilingual.prefixes(langtoks, *test.pair) if test.pair else ([], [])
        if (source_prefix, target_prefix) != (test.source_prefix, test.target_prefix):
            raise DecodingError(f"{self.path} puts {source_prefix} before a source and forces {target_prefix} as the "
                                f"first target tokens, the bench's task options {test.source_prefix} and "
                                f"{test.target_prefix}: export and bench with the same language options "
                                "(--lang-dict, --fixed-dictionary, --encoder-langtok, --decoder-langtok, --langtoks)")
        outputs, seconds, warmup = ct2.translate(self.path, test.sources, test.batches(s.batch_size), s.beam,
                                                 s.lenpen, s.threads, s.device, s.max_len_a, s.max_len_b, s.min_len,
                                                 use_vmap=bool(self.shortlist), source_prefix=source_prefix,
                                                 target_prefix=target_prefix, compute_type=s.compute_type)
        total = sum(seconds)
        strip = set(target_prefix)  # the target's language token, wherever it is, as fairseq's generator strips it
        hyps = self.complete({i: test.detok([t for t in tokens if t not in strip]) for i, tokens in enumerate(outputs)},
                             test)
        return Decoded(hyps, [len(t) for t in outputs], len(outputs) / total,
                       sum(len(t) + 1 for t in outputs) / total, warmup, seconds)

    def size(self):
        """model.bin, which is the weights; CTranslate2 gives no parameter count."""
        return None, os.path.getsize(os.path.join(self.path, "model.bin"))


def decoder_for(path, settings=None, shortlist=None):
    """A CTranslate2 folder's decoder, else a fairseq checkpoint's."""
    return (CTranslate2Decoder if ct2.is_model_dir(path) else FairseqDecoder)(path, settings, shortlist)


def model_size(path):
    return decoder_for(path).size()


def rotation(names, round_):
    """The order of round `round_`: it starts at model round_ mod n, so that no model is always the first
    one timed (after an idle machine) or the one timed right after another's load."""
    k = round_ % len(names)
    return names[k:] + names[:k]


def decode_rows(rows, test, repeats, log=None):
    """`rows`: {name: [Decoder of each seed]}. Every row's first seed is decoded `repeats` times, the
    rows rotating (`rotation`); its first decoding gives that seed's hypotheses. The other seeds are
    decoded once, for quality only. Returns ({name: [Decoded per seed]}, {name: [timed Decoded]})."""
    names = list(rows)
    timed = {name: [] for name in names}
    for r in range(repeats):
        for name in rotation(names, r):
            if log:
                log(f"run {r + 1}/{repeats}, {name}")
            timed[name].append(rows[name][0].translate(test))
    seeds = {}
    for name in names:
        seeds[name] = [timed[name][0]]
        for k, decoder in enumerate(rows[name][1:], 2):
            if log:
                log(f"{name}, seed {k}/{len(rows[name])} (quality only)")
            seeds[name].append(decoder.translate(test))
    return seeds, timed


def warm_generate():
    """fairseq-generate's own main on sys.argv. Whatever the task's inference_step, the generator decodes
    the first batch once before the clock starts (the clock restarts after that warm-up); the warm-up's
    seconds, then each timed batch's seconds and output tokens (</s> included) go to stderr, the meter
    the bench reads (not fairseq's log, whose stream depends on which module configured logging first)."""
    import fairseq_cli.generate as generate
    from fairseq.logging.meters import StopwatchMeter

    clocks, warm = [], []

    class Clock(StopwatchMeter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            clocks.append(self)

        def stop(self, n=1, prehook=None):
            before = self.sum
            super().stop(n, prehook)
            print(f"{BATCH} {self.sum - before:.6f} {n}", file=sys.stderr, flush=True)

    def warmed(generator):
        decode = generator.generate

        def generate_warm(*args, **kwargs):
            if not warm:
                start = time.perf_counter()
                decode(*args, **kwargs)
                warm.append(time.perf_counter() - start)
                print(f"{WARMUP} {warm[0]:.6f}", file=sys.stderr, flush=True)
                for clock in clocks:
                    clock.start()
            return decode(*args, **kwargs)

        generator.generate = generate_warm
        return generator

    setup_task = generate.tasks.setup_task

    def setup_warm(*args, **kwargs):
        task = setup_task(*args, **kwargs)
        build = task.build_generator
        task.build_generator = lambda *a, **k: warmed(build(*a, **k))
        return task

    generate.StopwatchMeter, generate.tasks.setup_task = Clock, setup_warm
    generate.cli_main()


if __name__ == "__main__":
    warm_generate()
