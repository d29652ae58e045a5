"""`fairseq-wd-bench --shortlist [LABEL=]vmap.txt`: for every model a row `NAME + shortlist` decoded over
each batch's candidate targets (fairseq: `--task distillation --shortlist`; CTranslate2: `use_vmap`), and
the figures that say what a shortlist costs and gains: its candidate-set size and coverage of the test
references, each model's BLEU with minus without it and its speed-ups.

The file is checked against the data-bin's dictionaries before anything is decoded (CTranslate2 itself
would read an unknown target as <unk>). CTranslate2 reads a shortlist only as `vmap.txt` inside the model
folder: a folder without that very file is decoded through a folder of links to its files plus a copy.
"""
import os
from dataclasses import dataclass

from ..datasets import data_bin
from ..export import ct2
from ..shortlist import vmap as sl
from .decoding import decoder_for


@dataclass
class Spec:
    """One --shortlist: `suffix` names its rows (`NAME + shortlist`, or `NAME + shortlist LABEL`)."""
    label: str
    path: str
    suffix: str
    coverage: sl.Coverage = None


def parse(specs):
    """[Spec] of the --shortlist values; with several, each needs a distinct LABEL (a path that is a file
    is a file, '=' and all)."""
    parsed = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or os.path.isfile(spec):
            label, path = None, spec
        if sep and not (label and path) and not os.path.isfile(spec):
            raise sl.VmapError(f"--shortlist {spec!r}: write FILE or LABEL=FILE")
        parsed.append(Spec(label, path, " + shortlist" + (f" {label}" if label else "")))
    if len(parsed) > 1 and (any(s.label is None for s in parsed) or len({s.label for s in parsed}) < len(parsed)):
        raise sl.VmapError("several --shortlist: give each a distinct label, --shortlist LABEL=FILE "
                           "(its rows are named NAME + shortlist LABEL)")
    return parsed


def check(specs, data, subset, src, tgt, batch_size):
    """Reads every shortlist against the data-bin's dictionaries (VmapError naming the line) and measures
    its coverage of `subset`'s references at the bench's batching."""
    src_dict, tgt_dict = data_bin.dictionaries(data, src, tgt)
    for spec in specs:
        shortlist = sl.Shortlist(sl.read_vmap(spec.path, src_dict, tgt_dict), src_dict, tgt_dict)
        spec.coverage = sl.coverage(shortlist, data, subset, batch_size)


def expand(models, specs):
    """({row: [path per seed]} with each model followed by its shortlist rows, {shortlist row: (plain row,
    Spec)})."""
    rows, plain_of = {}, {}
    for name, paths in models.items():
        rows[name] = paths
        for spec in specs:
            row = name + spec.suffix
            if row in models:
                raise sl.VmapError(f"--shortlist: a --model is already named {row!r}, the name of {name}'s "
                                   "shortlist row; rename it")
            rows[row], plain_of[row] = paths, (name, spec)
    return rows, plain_of


def model_path(path, spec, key, workdir):
    """What a shortlist row decodes: the checkpoint, or a CTranslate2 folder holding the shortlist (made
    under `workdir`/shortlist-ct2/`key` where needed)."""
    if not ct2.is_model_dir(path):
        return path
    return ct2.with_vmap(path, spec.path, os.path.join(workdir, "shortlist-ct2", key))


def decoders(rows, plain_of, settings, workdir):
    """{row: [Decoder per seed]}: a shortlist row's with its file (fairseq) or a folder holding it (CTranslate2)."""
    out = {}
    for n, (name, paths) in enumerate(rows.items(), 1):
        spec = plain_of[name][1] if name in plain_of else None
        out[name] = [decoder_for(model_path(p, spec, f"row{n}.seed{k}", workdir), settings, spec.path)
                     if spec else decoder_for(p, settings) for k, p in enumerate(paths, 1)]
    return out


def annotate(scored, specs, plain_of, batch_size):
    """Each row's `shortlist` (its file, or None) and `plain` (its row without it), and `shortlists`."""
    for row in scored["models"]:
        plain, spec = plain_of.get(row["name"], (None, None))
        row["shortlist"], row["plain"] = spec and spec.path, plain
    scored["shortlists"] = figures(scored["models"], specs, plain_of, batch_size)


def figures(rows, specs, plain_of, batch_size):
    """bench.json's `shortlists`: per shortlist its candidate-set size and coverage, and per model the BLEU
    and chrF cost (with minus without) and the speed-ups: against the same model without it, against the
    first model (the teacher) with it (what distillation gains) and without it (what a user gains in all)."""
    by_name = {r["name"]: r for r in rows}
    first = rows[0]["name"]
    out = []
    for spec in specs:
        c = spec.coverage
        teacher = by_name[first + spec.suffix]
        figures_ = []
        for row, (plain, s) in plain_of.items():
            if s is not spec:
                continue
            a, b = by_name[row], by_name[plain]
            figures_.append({
                "model": plain, "row": row, "engine": a["engine"],
                "bleu_cost": round(a["bleu"] - b["bleu"], 2), "chrf_cost": round(a["chrf"] - b["chrf"], 2),
                "speedup_vs_plain": round(a["sentences_per_s"] / b["sentences_per_s"], 2),
                "speedup_vs_teacher_shortlist": None if plain == first else
                round(a["sentences_per_s"] / teacher["sentences_per_s"], 2),
                "speedup_vs_teacher": a["speedup"]})
        out.append({"label": spec.label, "path": spec.path, "row_suffix": spec.suffix, "batch_size": batch_size,
                    "vocab_size": c.vocab_size, "batches": c.batches, "candidates_mean": round(c.mean_candidates, 1),
                    "candidates_share": round(c.mean_candidates / c.vocab_size, 4),
                    "reference_tokens": c.tokens, "reference_tokens_covered": c.covered,
                    "coverage": round(c.token_share, 4),
                    "references_covered": round(c.sentences_covered / max(c.sentences, 1), 4), "rows": figures_})
    return out
