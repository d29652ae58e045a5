"""A data-bin's test split as fairseq-generate reads, batches and prints it: what every decoder of the
bench translates and what its hypotheses are scored against by default."""
import argparse

import numpy as np
import torch
from fairseq.data import data_utils

from .. import languages
from ..datasets.data_bin import dictionaries, generate_batches, language_pair, read_split
from .decoding import DecodingError


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
        languages.token_settings) add; else the pair of `options`' -s/-t (the parsed fairseq-generate
        args), or the data-bin's only pair (language_pair). `options`' --bpe and --tokenizer decode
        the targets and every decoder's output alike (output_decoder)."""
        asked = pair or (getattr(options, "source_lang", None), getattr(options, "target_lang", None))
        self.src, self.tgt, files = language_pair(data, subset, *asked)
        self.data, self.subset, self.post_process = data, subset, post_process
        self.pair = pair
        self.source_prefix, self.target_prefix = languages.prefixes(langtoks, *pair) if pair else ([], [])
        self.decode = output_decoder(options, self.src, self.tgt)

        src_dict, tgt_dict = dictionaries(data, self.src, self.tgt)
        src_ids, tgt_ids = read_split(data, subset, self.src, self.tgt, files)  # with </s>
        # CTranslate2 reads <unk> as the unknown token; fairseq's length limits count the language token
        self.sources = [src_dict.string(torch.from_numpy(s)).split() for s in src_ids]
        self.src_sizes = np.array([len(s) + len(self.source_prefix) for s in src_ids], np.int64)
        self.targets = [self.detok(tgt_dict.string(torch.from_numpy(t), escape_unk=True).split()) for t in tgt_ids]
        self.tgt_sizes = np.array([len(t) for t in tgt_ids], np.int64)

    def __len__(self):
        return len(self.sources)

    def detok(self, pieces):
        """Output pieces as fairseq-generate's D- line writes them: post-processed, then decoded."""
        return self.decode(data_utils.post_process(" ".join(pieces), self.post_process))

    def batches(self, batch_size, required_batch_size_multiple=8):
        """fairseq-generate's batches (LanguagePairDataset.ordered_indices, then batch_by_size with the
        plugin's fix): sorted by source length, ties by target length."""
        return generate_batches(self.src_sizes, self.tgt_sizes, batch_size, required_batch_size_multiple)

    def length_limits(self, batch_size, max_len_a, max_len_b):
        """Each sentence's output limit, as fairseq-generate applies it: int(a * longest source of its batch
        (with </s>) + b) tokens, </s> not counted."""
        limits = [0] * len(self)
        for batch in self.batches(batch_size):
            limit = int(max_len_a * max(self.src_sizes[i] for i in batch) + max_len_b)
            for i in batch:
                limits[i] = limit
        return limits
