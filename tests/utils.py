"""What the tests share: the real fairseq commands on tiny data, and models built without training."""
import os
import random
import re
import subprocess
import sys

import torch

import warm_commands

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER_DIR = os.path.join(REPO, "fairseq_wd")
BIN = os.path.dirname(sys.executable)

# A model small enough to train in seconds on a CPU, large enough to learn the toy language.
TINY_DIMS = [
    "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--encoder-attention-heads", "4",
    "--decoder-embed-dim", "32", "--decoder-ffn-embed-dim", "64", "--decoder-attention-heads", "4",
    "--encoder-layers", "2", "--decoder-layers", "2",
]
TRAIN_FLAGS = [
    "--cpu", "--optimizer", "adam", "--lr", "0.003", "--lr-scheduler", "inverse_sqrt",
    "--warmup-updates", "20", "--max-tokens", "2000", "--dropout", "0.0", "--seed", "1",
    "--no-progress-bar", "--log-interval", "10", "--num-workers", "0",
    "--no-epoch-checkpoints",
]


def run(cmd, *args, env=None, check=True, disk_full_at=None, fresh=False):
    """Runs a console script of this venv (fairseq-train, fairseq-wd-...) and returns its output.
    `disk_full_at`: bytes after which every file write fails, as on a full disk (EFBIG, not ENOSPC).
    The command starts warm (warm_commands.py) unless `fresh`, or the server does not take it: then in a
    new interpreter."""
    exe = os.path.join(BIN, cmd)
    full_env = dict(os.environ, PYTHONUNBUFFERED="1")
    full_env.update(env or {})
    warm = None if fresh else warm_commands.run_warm(cmd, args, full_env, REPO, disk_full_at)
    if warm is not None:
        proc = subprocess.CompletedProcess([exe, *map(str, args)], *warm)
    else:
        proc = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, env=full_env, cwd=REPO,
                              preexec_fn=(lambda: warm_commands.fill_disk(disk_full_at)) if disk_full_at else None)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


WORDS = "ana are mere si pere la piata mare mica casa rosie verde noua veche".split()


def toy_pair(rng):
    """Target = source words reversed, each word mapped to a 'translation'. Learnable quickly."""
    n = rng.randint(3, 12)
    src = [rng.choice(WORDS) for _ in range(n)]
    tgt = [w[::-1].upper() for w in reversed(src)]
    return " ".join(src), " ".join(tgt)


def write_split(folder, prefix, n, seed):
    rng = random.Random(seed)
    pairs = [toy_pair(rng) for _ in range(n)]
    for lang, col in (("src", 0), ("tgt", 1)):
        with open(os.path.join(folder, f"{prefix}.{lang}"), "w") as f:
            f.writelines(p[col] + "\n" for p in pairs)


def train(data, save_dir, arch, *extra, updates=60):
    run("fairseq-train", data, "--user-dir", USER_DIR, "--arch", arch, "--save-dir", save_dir,
        "--max-update", updates, "--criterion", "label_smoothed_cross_entropy",
        "--label-smoothing", "0.1", *TRAIN_FLAGS, *extra)
    return os.path.join(save_dir, "checkpoint_last.pt")


# -- models built from their config alone (no data, no training) ------------------------------------------
STUDENT = ["--arch", "wd_transformer_tiny", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
           "--encoder-layers", "2", "--encoder-attention-heads", "4", "--decoder-attention-heads", "4"]


def model(arch, *extra, vocab=(100, 120), device="meta"):
    """A fairseq transformer of `arch` over dictionaries of the given sizes (meta: shapes only)."""
    from fairseq import options
    from fairseq.models.transformer import TransformerModel
    from fairseq_wd.students.layer_copy import SizedDictionaries

    args = options.parse_args_and_arch(options.get_training_parser(),
                                       ["unused", "--task", "translation", "--arch", arch, "--user-dir", USER_DIR,
                                        *extra])
    with torch.device(device):
        return TransformerModel.build_model(args, SizedDictionaries(*vocab))


def kd_train(data, save_dir, *extra, updates=4, **kwargs):
    return run("fairseq-train", data, "--user-dir", USER_DIR, "--task", "distillation", "--save-dir", save_dir,
               "--max-update", updates, *STUDENT, *TRAIN_FLAGS, *extra, **kwargs)


def valid_metric(log, name):
    return [float(v) for v in re.findall(rf"\| valid on 'valid' subset .*?\| {name} ([\d.]+)", log)]


def torchrun_every_rank(save_dir, port, *args):
    """2-process gloo fairseq-train; returns the two ranks' {model, criterion} weights at the end and the log."""
    log = run("torchrun", "--nproc_per_node", "2", "--master_port", port,
              os.path.join(REPO, "tests", "fairseq_train_every_rank.py"), *args, "--save-dir", save_dir,
              "--distributed-world-size", "2", "--distributed-backend", "gloo")
    text = log.stdout + log.stderr
    assert "distributed init (rank 1)" in text and "done training" in text
    return [torch.load(os.path.join(save_dir, f"rank{r}.pt"), weights_only=True) for r in (0, 1)], text
