"""Parallel text -> deterministic split -> joint sentencepiece -> `fairseq-preprocess`.

Sources: the shipped mpl.en-ro (see fairseq_wd/data/PROVENANCE.md), a TSV of `source<TAB>target`
lines (optionally .xz/.gz), or a pair of line-aligned files.
"""
import gzip
import lzma
import os
import random

SHIPPED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "mpl.en-ro.tsv.xz")
SPLITS = ("train", "valid", "test")


class CorpusError(ValueError):
    pass


def _open(path):
    opener = lzma.open if path.endswith(".xz") else gzip.open if path.endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8")


def read_pairs(tsv=None, src_file=None, tgt_file=None):
    if src_file or tgt_file:
        if not (src_file and tgt_file):
            raise CorpusError("give both --source-file and --target-file (line-aligned)")
        with _open(src_file) as s, _open(tgt_file) as t:
            src, tgt = s.read().splitlines(), t.read().splitlines()
        if len(src) != len(tgt):
            raise CorpusError(f"{src_file} has {len(src)} lines but {tgt_file} has {len(tgt)}: not line-aligned")
        pairs = list(zip(src, tgt))
    else:
        path = tsv or SHIPPED
        if not os.path.isfile(path):
            raise CorpusError(f"corpus not found: {path}")
        pairs = []
        with _open(path) as f:
            for n, line in enumerate(f, 1):
                cols = line.rstrip("\n").split("\t")
                if len(cols) != 2:
                    raise CorpusError(f"{path}:{n}: expected 'source<TAB>target', found {len(cols)} column(s)")
                pairs.append((cols[0], cols[1]))
    pairs = [(s.strip(), t.strip()) for s, t in pairs if s.strip() and t.strip()]
    return pairs


def split(pairs, test=500, valid=300, seed=1):
    """Seeded shuffle, then test | valid | train: the same split on every machine."""
    if len(pairs) < test + valid + 100:
        raise CorpusError(f"{len(pairs)} sentence pairs: too few for a {test}-sentence test and {valid}-sentence "
                          f"valid split plus training data")
    pairs = list(pairs)
    random.Random(seed).shuffle(pairs)
    return {"test": pairs[:test], "valid": pairs[test:test + valid], "train": pairs[test + valid:]}


def write_splits(splits, raw, src, tgt):
    os.makedirs(raw, exist_ok=True)
    for name, rows in splits.items():
        for col, lang in ((0, src), (1, tgt)):
            with open(os.path.join(raw, f"{name}.{lang}"), "w", encoding="utf-8") as f:
                f.writelines(r[col] + "\n" for r in rows)


def train_sentencepiece(raw, src, tgt, prefix, vocab_size, character_coverage=1.0):
    """Joint model on both train sides; samples 2M sentences of a large corpus, as is usual for WMT."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(input=f"{raw}/train.{src},{raw}/train.{tgt}", model_prefix=prefix,
                                   vocab_size=vocab_size, character_coverage=character_coverage,
                                   input_sentence_size=2_000_000, shuffle_input_sentence=True,
                                   hard_vocab_limit=False, num_threads=os.cpu_count(), minloglevel=1)
    return prefix + ".model"


def encode(raw, src, tgt, spm_model):
    """raw/{split}.{lang} -> raw/{split}.spm.{lang}."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=spm_model)
    for name in SPLITS:
        for lang in (src, tgt):
            with open(f"{raw}/{name}.{lang}", encoding="utf-8") as f, \
                    open(f"{raw}/{name}.spm.{lang}", "w", encoding="utf-8") as g:
                g.writelines(" ".join(sp.encode(line.rstrip("\n"), out_type=str)) + "\n" for line in f)


def preprocess_args(raw, src, tgt, dest, srcdict=None):
    args = ["--source-lang", src, "--target-lang", tgt, "--joined-dictionary", "--trainpref", f"{raw}/train.spm",
            "--validpref", f"{raw}/valid.spm", "--testpref", f"{raw}/test.spm", "--destdir", dest, "--workers", "2"]
    return args + (["--srcdict", srcdict] if srcdict else [])
