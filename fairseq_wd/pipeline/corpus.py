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


def lines(path):
    """(line number, text) of a text file (.xz/.gz too), refusing what would silently corrupt training."""
    opener = lzma.open if path.endswith(".xz") else gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        for n, line in enumerate(f, 1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise CorpusError(f"{path}:{n}: not UTF-8 (byte {line[e.start]:#04x} at column {e.start + 1}): "
                                  "convert the file, e.g. iconv -f latin1 -t utf-8") from None
            if text.endswith("\r\n"):
                raise CorpusError(f"{path}:{n}: Windows line end (\\r\\n): convert the file with dos2unix or "
                                  "sed -i 's/\\r$//'")
            yield n, text.rstrip("\n")


def _check_sides(pairs, where):
    for n, (src, tgt) in enumerate(pairs, 1):
        if not src.strip() or not tgt.strip():
            side = "source" if not src.strip() else "target"
            raise CorpusError(f"{where(n, side)}: empty {side} side: remove the pair (or fill it in)")


def read_pairs(tsv=None, src_file=None, tgt_file=None):
    if src_file or tgt_file:
        if not (src_file and tgt_file):
            raise CorpusError("give both --source-file and --target-file (line-aligned)")
        for path in (src_file, tgt_file):
            if not os.path.isfile(path):
                raise CorpusError(f"corpus file not found: {path}")
        src, tgt = [t for _, t in lines(src_file)], [t for _, t in lines(tgt_file)]
        if len(src) != len(tgt):
            raise CorpusError(f"{src_file} has {len(src)} lines but {tgt_file} has {len(tgt)}: not line-aligned")
        pairs = list(zip(src, tgt))
        _check_sides(pairs, lambda n, side: f"{src_file if side == 'source' else tgt_file}:{n}")
    else:
        path = tsv or SHIPPED
        if not os.path.isfile(path):
            raise CorpusError(f"corpus not found: {path}")
        pairs = []
        for n, line in lines(path):
            cols = line.split("\t")
            if len(cols) != 2:
                raise CorpusError(f"{path}:{n}: expected 'source<TAB>target', found {len(cols)} column(s)")
            pairs.append((cols[0], cols[1]))
        _check_sides(pairs, lambda n, side: f"{path}:{n}")
    return [(s.strip(), t.strip()) for s, t in pairs]


def split(pairs, test=500, valid=300, seed=1):
    """Seeded shuffle, then test | valid | train: the same split on every machine. Test and valid pairs
    whose source also occurs in train are then removed (UI strings and Bible verses repeat), so no score
    rewards memorised training lines; train stays as cut. Returns (splits, {split: pairs removed})."""
    if len(pairs) < test + valid + 100:
        raise CorpusError(f"{len(pairs)} sentence pairs: too few for a {test}-sentence test and {valid}-sentence "
                          f"valid split plus training data")
    pairs = list(pairs)
    random.Random(seed).shuffle(pairs)
    cut = {"test": pairs[:test], "valid": pairs[test:test + valid], "train": pairs[test + valid:]}
    return without_train_sources(cut)


def without_train_sources(splits):
    """(splits with the test/valid pairs whose source occurs in train removed, {split: pairs removed})."""
    seen = {src for src, _ in splits["train"]}
    kept = {name: [p for p in rows if name == "train" or p[0] not in seen] for name, rows in splits.items()}
    return kept, {name: len(splits[name]) - len(kept[name]) for name in splits if name != "train"}


def write_splits(splits, raw, src, tgt):
    os.makedirs(raw, exist_ok=True)
    for name, rows in splits.items():
        for col, lang in ((0, src), (1, tgt)):
            with open(os.path.join(raw, f"{name}.{lang}"), "w", encoding="utf-8") as f:
                f.writelines(r[col] + "\n" for r in rows)


CJK = ("zh", "ja")  # languages of many characters: sentencepiece's recommended coverage 0.9995


def character_coverage(src, tgt):
    """sentencepiece's recommendation: 0.9995 when a side is Chinese or Japanese (rare characters
    become <unk> instead of one piece each), 1.0 otherwise."""
    return 0.9995 if any(lang.split("_")[0].lower() in CJK for lang in (src, tgt)) else 1.0


def train_sentencepiece(files, prefix, vocab_size, character_coverage=1.0):
    """Joint model on every train side (`files`: raw/train.SRC, raw/train.TGT; every pair's for a
    multilingual corpus); samples 2M sentences of a large corpus, as is usual for WMT."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(input=",".join(files), model_prefix=prefix,
                                   vocab_size=vocab_size, character_coverage=character_coverage,
                                   input_sentence_size=2_000_000, shuffle_input_sentence=True,
                                   hard_vocab_limit=False, num_threads=os.cpu_count(), minloglevel=1)
    return prefix + ".model"


def encode(raw, src, tgt, spm_model, max_positions=None):
    """raw/{split}.{lang} -> raw/{split}.spm.{lang}. With `max_positions`, a sentence with more pieces
    than the model has positions (end of sentence included) is an error: fairseq-train would skip it
    without a word and fairseq-generate drop it from the test set."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=spm_model)
    for name in SPLITS:
        for lang in (src, tgt):
            path = f"{raw}/{name}.{lang}"
            with open(f"{raw}/{name}.spm.{lang}", "w", encoding="utf-8") as g:
                for n, line in lines(path):
                    pieces = sp.encode(line, out_type=str)
                    if max_positions and len(pieces) + 1 > max_positions:
                        raise CorpusError(f"{path}:{n}: {len(pieces)} subword pieces, more than the model's "
                                          f"{max_positions} positions (end of sentence included): split or drop "
                                          "the sentence")
                    g.write(" ".join(pieces) + "\n")


def preprocess_args(raw, src, tgt, dest, srcdict=None):
    args = ["--source-lang", src, "--target-lang", tgt, "--joined-dictionary", "--trainpref", f"{raw}/train.spm",
            "--validpref", f"{raw}/valid.spm", "--testpref", f"{raw}/test.spm", "--destdir", dest, "--workers", "2"]
    return args + (["--srcdict", srcdict] if srcdict else [])
