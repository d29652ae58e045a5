"""A step's key: what made its output. A step is done only for the key stored with its mark, so a rerun
after any change of settings, inputs or package version redoes that step and, through their keys,
every step that reads it; an unchanged rerun redoes nothing.

A key is a record, {"what": the command line or settings, "inputs": {path: key or fingerprint},
"version": the package's}, with paths under the work dir written as $WORK (a moved work dir keeps its
keys) and its sha256. Inputs made by an earlier step are known by that step's key; a file from outside
(a given teacher, corpus, data-bin, references) by its content.
"""
import difflib
import hashlib
import json
import os

from .. import __version__

WHOLE_HASH_LIMIT = 256 * 2 ** 20  # bytes: larger files are known by size, mtime and their first/last 16 MB
EDGE = 16 * 2 ** 20


def fingerprint(path):
    """A file's (or a folder's files') content, as a short sha256; `None` when it does not exist."""
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if not f.startswith(".") and os.path.isfile(os.path.join(path, f)))
        return digest({f: fingerprint(os.path.join(path, f)) for f in files})
    if not os.path.isfile(path):
        return None
    h, size = hashlib.sha256(), os.path.getsize(path)
    with open(path, "rb") as f:
        if size <= WHOLE_HASH_LIMIT:
            for block in iter(lambda: f.read(2 ** 20), b""):
                h.update(block)
        else:
            h.update(f"{size} {os.path.getmtime(path)}".encode())
            h.update(f.read(EDGE))
            f.seek(size - EDGE)
            h.update(f.read(EDGE))
    return h.hexdigest()[:16]


def digest(record):
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


def record(what, inputs):
    return {"what": what, "inputs": inputs, "version": __version__}


def changes(old, new):
    """What differs between two records, in words for the log: the changed options, inputs, version."""
    if old is None:
        return ["no key stored (made by an earlier version of fairseq-wd, or interrupted before it was keyed)"]
    said = []
    if old.get("version") != new["version"]:
        said.append(f"fairseq-wd {old.get('version')} -> {new['version']}")
    if old.get("what") != new["what"]:
        said.append(_what_changed(old.get("what"), new["what"]))
    old_inputs, new_inputs = old.get("inputs", {}), new["inputs"]
    for path in sorted(set(old_inputs) | set(new_inputs)):
        if old_inputs.get(path) != new_inputs.get(path):
            how = ("is new" if path not in old_inputs else "is no longer used" if path not in new_inputs
                   else "was redone or changed")
            said.append(f"input {path} {how}")
    return said or ["the stored key differs"]


def _what_changed(old, new):
    if isinstance(old, list) and isinstance(new, list):
        parts = []
        for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
            if op != "equal":
                was, now = " ".join(map(str, old[i1:i2])), " ".join(map(str, new[j1:j2]))
                parts.append(f"'{now}' (was '{was}')" if was and now else f"'{now}' added" if now else f"'{was}' removed")
        return "command: " + "; ".join(parts)
    if isinstance(old, dict) and isinstance(new, dict):
        return "settings: " + "; ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                                        if old.get(k) != new.get(k))
    return f"settings: {old!r} -> {new!r}"
