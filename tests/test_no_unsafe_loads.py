"""No checkpoint or data file is unpickled with arbitrary code execution anywhere in the package."""
import os
import re

from utils import REPO

UNSAFE = re.compile(r"weights_only\s*=\s*False|pickle\.loads?\(")


def unsafe(line):
    """A load that may unpickle code: weights_only=False, pickle, or torch.load without weights_only=True
    on its line (torch < 2.6 defaults to False)."""
    return bool(UNSAFE.search(line)) or ("torch.load(" in line and not re.search(r"weights_only\s*=\s*True", line))


def python_files():
    for top in ("fairseq_wd", "examples", "hydra_configs"):
        for folder, _, names in os.walk(os.path.join(REPO, top)):
            yield from (os.path.join(folder, n) for n in names if n.endswith(".py"))


def test_every_load_is_weights_only():
    found = [f"{os.path.relpath(path, REPO)}:{n}: {line.strip()}"
             for path in python_files() for n, line in enumerate(open(path, encoding="utf-8"), 1)
             if unsafe(line)]
    assert not found, "loads that can run code from a file:\n" + "\n".join(found)


def test_the_scan_finds_unsafe_loads():
    assert unsafe('state = torch.load(path, map_location="cpu", weights_only=False)')
    assert unsafe("state = torch.load(path)")
    assert unsafe("obj = pickle.load(f)")
    assert not unsafe("results.update(torch.load(chunk_path(dest, c), weights_only=True))")
