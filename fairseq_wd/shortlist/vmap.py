"""Lexical shortlists (vocabulary selection): which target tokens a batch may produce, as CTranslate2's
`vmap.txt`, so that decoding projects onto a few hundred output rows instead of the whole vocabulary.

One file serves both decoders: `fairseq-generate --task distillation --shortlist vmap.txt` (see
shortlist/generator.py) and CTranslate2 (`vmap.txt` in the model folder, `translate_batch(use_vmap=True)`).
The format (CTranslate2's src/vocabulary_map.cc): one line per source key, `src<TAB>tgt_1 tgt_2 ...`,
tokens separated by single spaces; the line with an empty key lists the targets always included;
`<unk>`, `<s>`, `</s>` are always added. CTranslate2 silently keeps the last of two lines with the same
key and maps a target it does not know to `<unk>`, so every file is checked when written and read.

Built as Marian's shortlists are (docs/shortlists.md): per source token the top-K target tokens by p(t|s),
here from an IBM-1 count model over the binarized train (or teacher output) data instead of
fast_align, plus the M most frequent target tokens, plus the source token itself with a joint dictionary.
"""
import os
from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np
import torch

from ..datasets.data_bin import dictionaries, generate_batches, language_pair, read_split

ALWAYS = ("<unk>", "<s>", "</s>")  # what CTranslate2 adds to every candidate set


class VmapError(ValueError):
    pass


@dataclass
class Vmap:
    """A shortlist as text: `rules[source token]` -> target tokens; `always` -> the empty key's line."""
    always: List[str] = field(default_factory=list)
    rules: Dict[str, List[str]] = field(default_factory=dict)


# -- the file ----------------------------------------------------------------------------------------------

def parse_line(line, path, number, seen):
    """(key, targets) of one line, or VmapError naming the file, the line and what to fix."""
    where = f"{path}, line {number}"
    if line.endswith("\r"):
        raise VmapError(f"{where}: Windows line end (\\r\\n); write the file with \\n line ends")
    if line.count("\t") != 1:
        raise VmapError(f"{where}: {line.count(chr(9))} TABs; a line is `source_token<TAB>target_1 target_2 ...` "
                        "with exactly one TAB (a line that starts with the TAB lists the targets always included)")
    key, targets = line.split("\t")
    if " " in key:
        raise VmapError(f"{where}: source key {key!r} has several tokens; only single-token keys are supported "
                        "(fairseq decoding matches source tokens one by one)")
    if key in seen:
        name = "the always line (empty key)" if key == "" else f"key {key!r}"
        raise VmapError(f"{where}: {name} is also on line {seen[key]} (CTranslate2 would keep only the last): "
                        "merge the two lines")
    tokens = targets.split(" ") if targets else []
    if "" in tokens:
        raise VmapError(f"{where}: empty target token (two spaces in a row, or a space at the start or end "
                        "of the targets); separate targets by single spaces")
    seen[key] = number
    return key, tokens


def check(vmap, path, src_dict=None, tgt_dict=None, lines=None):
    """Every key a source symbol and every target a target symbol (CTranslate2 would read an unknown
    target as <unk>, and a key of another vocabulary never matches); `lines`: key -> line number."""
    def where(key):
        return f"{path}, line {lines[key]}" if lines else f"{path}, key {key!r}"

    for key, targets in [("", vmap.always), *vmap.rules.items()]:
        if src_dict is not None and key and src_dict.index(key) == src_dict.unk() and key != "<unk>":
            raise VmapError(f"{where(key)}: source key {key!r} is not in the source dictionary; "
                            "build the shortlist from this model's data-bin (fairseq-wd-shortlist)")
        for t in targets:
            if tgt_dict is not None and tgt_dict.index(t) == tgt_dict.unk() and t != "<unk>":
                raise VmapError(f"{where(key)}: target {t!r} is not in the target dictionary (CTranslate2 would "
                                "read it as <unk>); remove it or build the shortlist from this model's data-bin")
            if not t or any(c.isspace() for c in t):
                raise VmapError(f"{where(key)}: target {t!r} is empty or holds white space")
        if any(c.isspace() for c in key):
            raise VmapError(f"{where(key)}: source key {key!r} holds white space")


def read_vmap(path, src_dict=None, tgt_dict=None):
    """The Vmap in `path`, checked line by line (and against the dictionaries, when given)."""
    if not os.path.isfile(path):
        raise VmapError(f"shortlist {path} does not exist: write one with fairseq-wd-shortlist")
    vmap, seen = Vmap(), {}
    with open(path, encoding="utf-8", newline="\n") as f:
        try:
            for number, line in enumerate(f, 1):
                key, targets = parse_line(line.rstrip("\n"), path, number, seen)
                if key:
                    vmap.rules[key] = targets
                else:
                    vmap.always = targets
        except UnicodeDecodeError as e:
            raise VmapError(f"{path}: not UTF-8 ({e})") from e
    check(vmap, path, src_dict, tgt_dict, seen)
    return vmap


def write_vmap(vmap, path, src_dict=None, tgt_dict=None):
    """Writes `path` (which must not exist), checked first; aside and then renamed, so a file that
    exists is whole."""
    if os.path.exists(path):
        raise VmapError(f"{path} exists; choose another --output or delete it")
    check(vmap, path, src_dict, tgt_dict)
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8", newline="\n") as f:
        f.write("\t" + " ".join(vmap.always) + "\n")
        for key, targets in vmap.rules.items():
            f.write(key + "\t" + " ".join(targets) + "\n")
    os.replace(partial, path)
    return path


# -- in fairseq ids ----------------------------------------------------------------------------------------

class Shortlist:
    """A Vmap in fairseq ids: `candidates(src_tokens)` -> the sorted target ids a batch may produce."""

    def __init__(self, vmap, src_dict, tgt_dict):
        self.vocab_size = len(tgt_dict)
        # with every id below nspecial (<s>, <pad>, </s>, <unk>): fairseq decodes in the candidates' space,
        # where those keep their ids, and masks <pad> after the softmax as plain decoding does, so a shortlist
        # holding every target normalises over exactly what plain decoding does
        ids = {tgt_dict.index(t) for t in vmap.always + list(ALWAYS)} | set(range(tgt_dict.nspecial))
        self.always = torch.tensor(sorted(ids), dtype=torch.long)
        width = max([len(t) for t in vmap.rules.values()] + [1])
        # one row per source id, padded with </s> (always a candidate); a source id without a key adds nothing
        self.table = torch.full((len(src_dict), width), tgt_dict.eos(), dtype=torch.long)
        for key, targets in vmap.rules.items():
            ids = [tgt_dict.index(t) for t in targets]
            self.table[src_dict.index(key), :len(ids)] = torch.tensor(ids, dtype=torch.long)

    @classmethod
    def from_file(cls, path, src_dict, tgt_dict):
        return cls(read_vmap(path, src_dict, tgt_dict), src_dict, tgt_dict)

    def candidates(self, src_tokens, minimum=0):
        """Sorted target ids: the union over the batch's source tokens (any shape, padding included:
        pad has no key) plus the always list, <unk>, <s> and </s>, as CTranslate2 forms it (and every id
        below nspecial); then the smallest other ids up to `minimum` ids, if there are fewer."""
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        mask[self.always] = True
        mask[self.table[torch.unique(src_tokens).cpu()].flatten()] = True  # the batch's distinct ids leave the device
        missing = minimum - int(mask.sum())
        if missing > 0:
            mask[(~mask).nonzero().squeeze(1)[:missing]] = True
        return mask.nonzero().squeeze(1)


# -- building it -------------------------------------------------------------------------------------------

def _flat(sentences, specials):
    """Tokens without the specials (ids < nspecial: </s>, pad, ...), concatenated, and each sentence's length."""
    kept = [s[s >= specials] for s in sentences]
    return (np.concatenate(kept) if kept else np.zeros(0, np.int64)), np.array([len(s) for s in kept], np.int64)


def _pairs(src, src_len, tgt, tgt_len, null):
    """For every target position of the chunk, one (source token, target token, position) per source
    token of its sentence and one for NULL (id `null`), as IBM-1 sums over them."""
    src_with_null = np.insert(src, np.cumsum(src_len) - src_len, null)  # NULL first in each sentence
    s_len = src_len + 1
    s_off = np.cumsum(s_len) - s_len
    sent = np.repeat(np.arange(len(tgt_len)), tgt_len)
    reps = s_len[sent]
    pos = np.repeat(np.arange(len(tgt)), reps)
    within = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
    return src_with_null[np.repeat(s_off[sent], reps) + within], tgt[pos], pos


def translation_table(sources, targets, n_src, n_tgt, specials, iterations=5, chunk_pairs=20_000_000):
    """IBM model 1 by EM over the sentence pairs: (source ids, target ids, p(t|s)) of every pair that
    co-occurs, NULL excluded. Sparse and chunked: memory grows with the distinct pairs, not the corpus."""
    src, src_len = _flat(sources, specials)
    tgt, tgt_len = _flat(targets, specials)
    per_sentence = np.cumsum((src_len + 1) * tgt_len)
    total = int(per_sentence[-1]) if len(per_sentence) else 0
    cuts = np.searchsorted(per_sentence, np.arange(1, total // chunk_pairs + 1) * chunk_pairs, side="right")
    edges = np.unique(np.concatenate([[0], cuts, [len(src_len)]]))
    s_off, t_off = np.cumsum(src_len) - src_len, np.cumsum(tgt_len) - tgt_len

    def chunks():  # a sentence with more pairs than chunk_pairs is a chunk of its own
        for start, end in zip(edges[:-1], edges[1:]):
            s = src[s_off[start]:s_off[end - 1] + src_len[end - 1]]
            t = tgt[t_off[start]:t_off[end - 1] + tgt_len[end - 1]]
            s_ids, t_ids, pos = _pairs(s, src_len[start:end], t, tgt_len[start:end], n_src)
            yield s_ids * n_tgt + t_ids, pos

    keys = np.zeros(0, np.int64)
    for k, _ in chunks():
        keys = np.union1d(keys, k)
    prob = np.ones(len(keys))  # uniform start: the first E-step counts co-occurrences, length-normalised
    for _ in range(iterations):
        counts = np.zeros(len(keys))
        for k, pos in chunks():
            idx = np.searchsorted(keys, k)
            w = prob[idx]
            counts += np.bincount(idx, w / np.bincount(pos, w)[pos], minlength=len(keys))
        source = keys // n_tgt
        prob = counts / np.bincount(source, counts, minlength=n_src + 1)[source]
    source, target = keys // n_tgt, keys % n_tgt
    real = source != n_src
    return source[real], target[real], prob[real]


def top_targets(source, target, prob, k):
    """source id -> its k most probable target ids (ties: the smaller id first)."""
    order = np.lexsort((target, -prob, source))
    source, target = source[order], target[order]
    starts = np.searchsorted(source, source, side="left")
    keep = np.arange(len(source)) - starts < k
    result = {}
    for s, t in zip(source[keep], target[keep]):
        result.setdefault(int(s), []).append(int(t))
    return result


def build_vmap(data, train_data=None, top_k=50, frequent=100, iterations=5, split="train"):
    """The shortlist of `data`'s dictionaries, from the `split` of `train_data` (default: `data`; e.g. the
    teacher output data-bin of fairseq-wd-distill-data, on the same dictionaries)."""
    if iterations < 1 or top_k < 0 or frequent < 0:
        raise VmapError(f"need iterations >= 1, top_k >= 0, frequent >= 0 (got {iterations}, {top_k}, {frequent})")
    src, tgt, _ = language_pair(train_data or data, split)
    src_dict, tgt_dict = dictionaries(data, src, tgt)
    if train_data is not None:
        for d, other in zip((src_dict, tgt_dict), dictionaries(train_data, src, tgt)):
            if d.symbols != other.symbols:
                raise VmapError(f"{train_data}'s dictionaries differ from {data}'s: the train data must be "
                                "binarized with the same dict.*.txt (fairseq-wd-distill-data does)")
    sources, targets = read_split(train_data or data, split, src, tgt)
    specials = max(src_dict.nspecial, tgt_dict.nspecial)
    s, t, p = translation_table(sources, targets, len(src_dict), len(tgt_dict), specials, iterations)
    best = top_targets(s, t, p, top_k)
    counts = np.bincount(_flat(targets, specials)[0], minlength=len(tgt_dict))
    counts[:specials] = 0
    most = [i for i in np.argsort(-counts, kind="stable")[:frequent] if counts[i] > 0]
    joint = src_dict.symbols == tgt_dict.symbols
    rules = {}
    for s_id in sorted(best):
        ids = best[s_id] + ([s_id] if joint and s_id not in best[s_id] else [])
        rules[src_dict[s_id]] = [tgt_dict[i] for i in ids]
    return Vmap(always=[tgt_dict[i] for i in most], rules=rules)


# -- how much it keeps -------------------------------------------------------------------------------------

@dataclass
class Coverage:
    tokens: int             # reference target tokens, </s> not counted
    covered: int            # of them inside their batch's candidate set
    sentences: int
    sentences_covered: int  # references entirely inside their batch's candidate set
    mean_candidates: float  # mean candidate-set size per batch
    vocab_size: int
    batches: int

    @property
    def token_share(self):
        return self.covered / max(self.tokens, 1)

    def __str__(self):
        return (f"coverage of reference tokens: {100 * self.token_share:.2f}% ({self.covered}/{self.tokens}); "
                f"references entirely covered: {100 * self.sentences_covered / max(self.sentences, 1):.1f}% "
                f"({self.sentences_covered}/{self.sentences}); mean candidate set: {self.mean_candidates:.0f} "
                f"of {self.vocab_size} target tokens ({100 * self.mean_candidates / self.vocab_size:.1f}%) "
                f"over {self.batches} batches")


def coverage(shortlist, data, split="valid", batch_size=64):
    """How much of `split`'s references the shortlist keeps, batched as fairseq-generate batches it."""
    src, tgt, _ = language_pair(data, split)
    sources, targets = read_split(data, split, src, tgt)
    eos = dictionaries(data, src, tgt)[1].eos()
    src_sizes = np.array([len(s) for s in sources])
    tgt_sizes = np.array([len(t) for t in targets])
    tokens = covered = sent_covered = 0
    sizes = []
    batches = generate_batches(src_sizes, tgt_sizes, batch_size)
    for batch in batches:
        ids = shortlist.candidates(torch.from_numpy(np.concatenate([sources[i] for i in batch])))
        allowed = np.zeros(shortlist.vocab_size, bool)
        allowed[ids.numpy()] = True
        sizes.append(len(ids))
        for i in batch:
            ref = targets[i][targets[i] != eos]
            hit = int(allowed[ref].sum())
            tokens, covered, sent_covered = tokens + len(ref), covered + hit, sent_covered + (hit == len(ref))
    return Coverage(tokens, covered, len(targets), sent_covered, float(np.mean(sizes)), shortlist.vocab_size,
                    len(batches))
