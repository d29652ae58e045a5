"""What a bench output records so that separate runs can be merged without their checkpoints: the
references as files of the output itself, and sha256 checksums of the test sources, the references and
every row's checkpoint (each seed's)."""
import hashlib
import os

READ_BYTES = 1 << 20


def reference_file(k):
    """The file name of the k-th reference set (1-based) inside a bench output."""
    return "references.txt" if k == 1 else f"references.{k}.txt"


def text(lines):
    """`lines` as a file holds them: each followed by a newline."""
    return "".join(line + "\n" for line in lines)


def lines_sha256(lines):
    """sha256 (hex) of `lines` as a file holds them: `sha256sum` of that file prints the same."""
    return hashlib.sha256(text(lines).encode("utf-8")).hexdigest()


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(READ_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_sha256(path):
    """sha256 of a checkpoint file's bytes; for a folder (a CTranslate2 model), sha256 over its files in
    name order, each as its relative name, a NUL byte, and its own sha256, so that renaming the folder
    keeps the checksum and changing any file inside changes it."""
    if not os.path.isdir(path):
        return file_sha256(path)
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(f"{os.path.relpath(full, path)}\0{file_sha256(full)}\n".encode("utf-8"))
    return digest.hexdigest()


def record(output_dir, sources, references, models):
    """Writes the references into `output_dir` (references.txt, references.2.txt, ...) and returns the
    fields a bench adds to its settings: `sources_sha256` (the test sources, one line each, a line being
    its pieces joined by spaces when given as a list), `reference_files`, `references_sha256` (one per
    reference set, each the sha256 of its file) and `checkpoint_sha256` ({row: [each seed's checksum]},
    checkpoint_sha256; a path shared by several rows is read once)."""
    os.makedirs(output_dir, exist_ok=True)
    files = [reference_file(k) for k in range(1, len(references) + 1)]
    for name, lines in zip(files, references):
        with open(os.path.join(output_dir, name), "w", encoding="utf-8") as f:
            f.write(text(lines))
    digests = {}
    for paths in models.values():
        for path in paths:
            if path not in digests:
                digests[path] = checkpoint_sha256(path)
    return {"sources_sha256": lines_sha256(s if isinstance(s, str) else " ".join(s) for s in sources),
            "reference_files": files, "references_sha256": [lines_sha256(lines) for lines in references],
            "checkpoint_sha256": {name: [digests[p] for p in paths] for name, paths in models.items()}}
