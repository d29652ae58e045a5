"""Decoding a test set with a model, timed: a fairseq checkpoint by fairseq-generate itself (in a process
of the bench's own: generate.py), a CTranslate2 folder by CTranslate2 with the same beam, length penalty, batches,
length limits and threads, so that their hypotheses and speeds compare. Both decode their first batch
once untimed before the clock starts, and both clocks time the same work (TIMED).
"""
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile

import torch

from .. import languages
from ..checkpoints import CheckpointError, load_state, model_args
from ..export import ct2
from .generate import BATCH, WARMUP

USER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the decoding process imports this very plugin (the one USER_DIR names), not a fairseq_wd folder that
# happens to lie in the working directory: python -P (3.11+) keeps the working directory off sys.path
SAFE_PATH = ["-P"] if sys.version_info >= (3, 11) else []
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


class GenerateProcess:
    """One `python -m fairseq_wd.bench.generate` process (generate.serve) for fairseq-generate runs under
    one environment, started at the first run; it ends when closed, or with the process that started it."""

    running = {}  # environment items -> GenerateProcess

    def __init__(self, env):
        self.proc = subprocess.Popen([sys.executable, *SAFE_PATH, "-m", "fairseq_wd.bench.generate"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    @classmethod
    def run(cls, argv, env):
        """fairseq-generate on `argv` (its own arguments) in the process for `env`: (exit code, stdout,
        stderr) as a process of its own would give them; a run during which the process dies fails, and a
        process found dead is started anew."""
        key = tuple(sorted(env.items()))
        if key not in cls.running or cls.running[key].proc.poll() is not None:
            cls.running[key] = cls(env)
        proc = cls.running[key].proc
        with tempfile.TemporaryDirectory() as folder:
            out, err = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
            try:
                proc.stdin.write(json.dumps({"argv": argv, "stdout": out, "stderr": err}) + "\n")
                proc.stdin.flush()
                answer = proc.stdout.readline()
            except BrokenPipeError:
                answer = ""
            if answer:
                code = int(answer)
            else:
                del cls.running[key]
                code = proc.wait()
            outputs = []
            for path in (out, err):
                outputs.append(open(path).read() if os.path.exists(path) else "")
        return (code, *outputs)

    @classmethod
    def close_all(cls):
        """Ends every process started (each ends as its stdin closes) and waits for them."""
        while cls.running:
            _, process = cls.running.popitem()
            process.proc.stdin.close()
            process.proc.wait()
            process.proc.stdout.close()


class FairseqDecoder(Decoder):
    """fairseq-generate on the test set's pair (with the warm-up and the meter of `warm_generate`), its
    batches loaded in the decoding process (--num-workers 0), timed per batch; every fairseq row with the
    same threads runs in the same `GenerateProcess`, its model loaded anew for each run."""

    def translate(self, test):
        s = self.settings
        args = [test.data, "--user-dir", USER_DIR, "--path", self.path,
                "--gen-subset", test.subset, "--beam", str(s.beam), "--lenpen", str(s.lenpen),
                "--batch-size", str(s.batch_size), "--max-len-a", str(s.max_len_a), "--max-len-b", str(s.max_len_b),
                "--min-len", str(s.min_len), "--post-process", test.post_process, *s.generate_args,
                "--source-lang", test.src, "--target-lang", test.tgt, "--num-workers", "0"]
        if self.shortlist:  # the plugin's task decodes over each batch's candidates; any checkpoint loads in it
            args += ["--task", "distillation", "--shortlist", self.shortlist]
        if s.device == "cpu":
            args.append("--cpu")
        env = dict(os.environ, OMP_NUM_THREADS=str(s.threads), MKL_NUM_THREADS=str(s.threads))
        code, stdout, stderr = GenerateProcess.run(args, env)
        if code != 0:
            raise DecodingError(f"fairseq-generate failed on {self.path}:\n{stderr[-3000:]}")
        batches = [(float(t), int(n)) for t, n in re.findall(rf"^{BATCH} ([\d.]+) (\d+)$", stderr, re.M)]
        if not batches:
            raise DecodingError(f"fairseq-generate timed no batch for {self.path}:\n{stderr[-3000:]}")
        seconds = [t for t, _ in batches]
        hyps, lengths = {}, {}
        for i, h in re.findall(r"^D-(\d+)\t\S+\t(.*)$", stdout, re.M):
            hyps.setdefault(int(i), h)  # the best, should --nbest print more
        for i, scores in re.findall(r"^P-(\d+)\t(.*)$", stdout, re.M):
            lengths.setdefault(int(i), len(scores.split()) - 1)  # a score per token, </s> included
        warmup = re.search(rf"^{WARMUP} ([\d.]+)$", stderr, re.M)
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
        source_prefix, target_prefix = languages.prefixes(langtoks, *test.pair) if test.pair else ([], [])
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
    decoded once, for quality only. Returns ({name: [Decoded per seed]}, {name: [timed Decoded]}); the
    fairseq-generate process is ended on return."""
    names = list(rows)
    timed = {name: [] for name in names}
    try:
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
    finally:
        GenerateProcess.close_all()
    return seeds, timed
