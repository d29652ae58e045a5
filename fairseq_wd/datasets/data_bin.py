"""A fairseq-preprocess output folder (a data-bin) read as fairseq reads it: which language pair a split
holds, its dictionaries, its sentences, and the batches fairseq-generate forms from them. The bench's
test set and the shortlist's coverage batch through `generate_batches`; training batches are fairseq's."""
import os

import numpy as np


class DataBinError(ValueError):
    """The data-bin lacks what was asked for, or holds several pairs where one was expected."""


def language_pair(data, subset, src=None, tgt=None):
    """(src, tgt, the files' SRC-TGT) of the pair fairseq decodes from `data`'s `subset`: src/tgt (fairseq's
    -s/-t) when given (read from SRC-TGT files, else from TGT-SRC ones, as fairseq's tasks look), else the
    data-bin's only pair (fairseq infers the first pair its folder listing shows: several are refused)."""
    if bool(src) != bool(tgt):
        raise DataBinError("--generate-args gives only one of -s/-t, which fairseq then ignores (it infers both "
                           "from the data-bin): give both, e.g. --generate-args='-s SRC -t TGT'")
    if not src:
        found = sorted({name.split(".")[1] for name in os.listdir(data)
                        if len(name.split(".")) >= 3 and len(name.split(".")[1].split("-")) == 2})
        if len(found) > 1:
            raise DataBinError(f"{data} holds the pairs {', '.join(found)} and fairseq-generate would decode "
                               "whichever its folder listing shows first: name the pair with fairseq's -s/-t (fairseq-wd-bench: "
                               f"--generate-args='-s {found[0].split('-')[0]} -t {found[0].split('-')[1]}')")
        src, tgt = found[0].split("-") if found else (None, None)
    for files in (f"{src}-{tgt}", f"{tgt}-{src}"):
        if src and os.path.isfile(os.path.join(data, f"{subset}.{files}.{src}.idx")):
            return src, tgt, files
    raise DataBinError(f"no binarized '{subset}' split {src or ''}-{tgt or ''} in {data}: run fairseq-preprocess "
                       f"with --{subset}pref")


def dictionaries(data, src, tgt):
    """(source, target) fairseq Dictionary of the data-bin."""
    from fairseq.data import Dictionary

    return tuple(Dictionary.load(os.path.join(data, f"dict.{lang}.txt")) for lang in (src, tgt))


def read_split(data, split, src, tgt, files=None):
    """The split's source and target sentences as lists of int arrays (with their </s>); `files`: the
    SRC-TGT of its file names (default src-tgt)."""
    from fairseq.data import indexed_dataset

    def side(lang):
        prefix = os.path.join(data, f"{split}.{files or f'{src}-{tgt}'}.{lang}")
        if not indexed_dataset.dataset_exists(prefix, impl="mmap"):
            raise DataBinError(f"no {prefix}.bin/.idx: {data} has no binarized '{split}' split for {src}-{tgt}")
        ds = indexed_dataset.make_dataset(prefix, impl="mmap")
        return [ds[i].numpy().astype(np.int64) for i in range(len(ds))]

    return side(src), side(tgt)


def generate_batches(src_sizes, tgt_sizes, batch_size, required_batch_size_multiple=8):
    """fairseq-generate's batches of a split at --batch-size, as lists of sentence ids: sorted by source
    length, ties by target length (LanguagePairDataset.ordered_indices), then data_utils.batch_by_size
    (with compat's fix that keeps the last batch)."""
    from fairseq.data import data_utils

    from .. import compat

    compat.apply()
    src_sizes, tgt_sizes = np.asarray(src_sizes, np.int64), np.asarray(tgt_sizes, np.int64)
    order = np.argsort(tgt_sizes, kind="mergesort")
    order = order[np.argsort(src_sizes[order], kind="mergesort")]
    return [list(b) for b in data_utils.batch_by_size(
        order, None, num_tokens_vec=np.maximum(src_sizes, tgt_sizes)[order], max_sentences=batch_size,
        required_batch_size_multiple=required_batch_size_multiple)]
