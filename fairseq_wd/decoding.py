"""Decoding a test set with a model, timed: a fairseq checkpoint by `fairseq-generate` itself, a
CTranslate2 folder by CTranslate2 with the same beam, length penalty, batches, length limits and
threads, so that their hypotheses and speeds compare.
"""
import dataclasses
import glob
import os
import re
import subprocess
import sys

import numpy as np
import torch
from fairseq.data import data_utils

from .checkpoints import load_state
from .deploy import ct2

USER_DIR = os.path.dirname(os.path.abspath(__file__))
SPEED = re.compile(r"Translated ([\d,]+) sentences \(([\d,]+) tokens\) in [\d.]+s "
                   r"\(([\d.]+) sentences/s, ([\d.]+) tokens/s\)")


class DecodingError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every decoder follows alike, so that rows differ by the model only. `generate_args`:
    further fairseq-generate options, which CTranslate2 cannot follow."""
    beam: int
    lenpen: float
    batch_size: int
    max_len_a: float
    max_len_b: int
    min_len: int
    threads: int
    device: str  # "cpu" or "cuda"
    generate_args: tuple = ()


class TestSet:
    """The data-bin's subset: how many sentences every model must translate, the source pieces
    CTranslate2 decodes and the batches fairseq-generate forms, and the post-processed targets (the
    default references)."""

    def __init__(self, data, subset, post_process):
        from fairseq.data import Dictionary, indexed_dataset

        found = sorted(glob.glob(os.path.join(data, f"{subset}.*-*.*.idx")))
        if not found:
            raise DecodingError(f"no binarized '{subset}' split in {data}: run fairseq-preprocess with --{subset}pref")
        self.data, self.subset, self.post_process = data, subset, post_process
        self.src, self.tgt = os.path.basename(found[0]).split(".")[1].split("-")

        def side(lang):
            d = Dictionary.load(os.path.join(data, f"dict.{lang}.txt"))
            ds = indexed_dataset.make_dataset(os.path.join(data, f"{subset}.{self.src}-{self.tgt}.{lang}"), impl="mmap")
            return [d.string(ds[i]) for i in range(len(ds))], ds.sizes.astype(np.int64)  # with </s>

        sources, self.src_sizes = side(self.src)
        targets, self.tgt_sizes = side(self.tgt)
        self.sources = [line.split() for line in sources]
        self.targets = [self.detok(line.split()) for line in targets]

    def __len__(self):
        return len(self.sources)

    def detok(self, pieces):
        return data_utils.post_process(" ".join(pieces), self.post_process)

    def batches(self, batch_size, required_batch_size_multiple=8):
        """fairseq-generate's batches (LanguagePairDataset.ordered_indices, then batch_by_size with the
        plugin's fix): sorted by source length, ties by target length."""
        order = np.argsort(self.tgt_sizes, kind="mergesort")
        order = order[np.argsort(self.src_sizes[order], kind="mergesort")]
        return [list(b) for b in data_utils.batch_by_size(
            order, None, num_tokens_vec=np.maximum(self.src_sizes, self.tgt_sizes)[order],
            max_sentences=batch_size, required_batch_size_multiple=required_batch_size_multiple)]


class Decoder:
    """A model at `path`, decoded under `settings` (which only translate needs)."""

    def __init__(self, path, settings=None):
        self.path, self.settings = path, settings

    def translate(self, test):
        """({sentence id: hypothesis}, sentences/s, tokens/s), tokens counted with the end of sentence."""
        raise NotImplementedError

    def size(self):
        """(parameters or None, bytes of the weights), not of the file, which may hold more."""
        raise NotImplementedError


class FairseqDecoder(Decoder):
    """fairseq-generate in a fresh process, timed by its own clock."""

    def translate(self, test):
        s = self.settings
        cmd = [sys.executable, "-m", "fairseq_cli.generate", test.data, "--user-dir", USER_DIR, "--path", self.path,
               "--gen-subset", test.subset, "--beam", str(s.beam), "--lenpen", str(s.lenpen),
               "--batch-size", str(s.batch_size), "--max-len-a", str(s.max_len_a), "--max-len-b", str(s.max_len_b),
               "--min-len", str(s.min_len), "--post-process", test.post_process, *s.generate_args]
        if s.device == "cpu":
            cmd.append("--cpu")
        env = dict(os.environ, OMP_NUM_THREADS=str(s.threads), MKL_NUM_THREADS=str(s.threads))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise DecodingError(f"fairseq-generate failed on {self.path}:\n{proc.stderr[-3000:]}")
        speed = SPEED.search(proc.stderr)
        if speed is None:
            raise DecodingError(f"fairseq-generate printed no 'Translated ... sentences/s' line for {self.path}")
        hyps = {}
        for i, h in re.findall(r"^D-(\d+)\t\S+\t(.*)$", proc.stdout, re.M):
            hyps.setdefault(int(i), h)  # the best, should --nbest print more
        return hyps, float(speed.group(3)), float(speed.group(4))

    def size(self):
        """The parameters at the dtype stored: the file may hold optimizer state or float16 copies."""
        state = load_state(self.path)
        weights = [t for k, t in state["model"].items()
                   if torch.is_tensor(t) and not k.endswith(("version", "_float_tensor"))]
        return sum(t.numel() for t in weights), sum(t.numel() * t.element_size() for t in weights)


class CTranslate2Decoder(Decoder):
    """CTranslate2 on fairseq-generate's batches, timed around its translate calls."""

    def translate(self, test):
        s = self.settings
        outputs, seconds = ct2.translate(self.path, test.sources, test.batches(s.batch_size), s.beam, s.lenpen,
                                         s.threads, s.device, s.max_len_a, s.max_len_b, s.min_len)
        hyps = {i: test.detok(tokens) for i, tokens in enumerate(outputs)}
        return hyps, len(outputs) / seconds, sum(len(t) + 1 for t in outputs) / seconds

    def size(self):
        """model.bin, which is the weights; CTranslate2 gives no parameter count."""
        return None, os.path.getsize(os.path.join(self.path, "model.bin"))


def decoder_for(path, settings=None):
    """A CTranslate2 folder's decoder, else a fairseq checkpoint's."""
    return (CTranslate2Decoder if ct2.is_model_dir(path) else FairseqDecoder)(path, settings)


def model_size(path):
    return decoder_for(path).size()
