"""Results kept in a repository (docs/results/EXPERIMENT/): each run's bench output copied without the
paths of the machine it ran on, with its provenance (run.json: the command, the fairseq-wd version and
commit, the date, the machine), so that the merged table can be regenerated from the kept files alone."""
import datetime
import json
import os
import platform
import re
import shutil
import subprocess

from .. import __version__

RUN_FILE = "run.json"  # a run's provenance, beside its bench output
KEPT = re.compile(r"^(bench\.json|bench\.md|run\.json|curves\.json|references(\.\d+)?\.txt|.+\.hyp)$")
# an absolute path inside a text: kept as its last part (a file or folder name says what it was)
ABSOLUTE = re.compile(r"(?<![\w.~$])/(?:[\w.+@=-]+/)+([\w.+@=-]+)")


def machine():
    """What ran it: the processor, its cores, torch and its threads, and the GPU when there is one."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    found = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        found["gpu"] = torch.cuda.get_device_name(0)
    return found


def commit():
    """The git commit of the fairseq-wd checkout that runs (None when installed from a package)."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def write_run(folder, command, work):
    """`folder`/run.json: `command` (its arguments, `work` written WORK), the version, commit, date and machine."""
    record = {"command": [portable(str(c), work) for c in command], "fairseq_wd": __version__, "commit": commit(),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": machine()}
    with open(os.path.join(folder, RUN_FILE), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    return record


def portable(text, work=None):
    """`text` with `work` written WORK and every other absolute path cut to its last part."""
    if work:
        text = re.sub(re.escape(os.path.abspath(work)) + r"(?![\w.+@=-])", "WORK", text)
    return ABSOLUTE.sub(r"\1", text)


def keep(bench_dir, dest):
    """Copies a bench output's files (bench.json, bench.md, run.json, references, hypotheses, and the
    pipeline's curves.json of valid BLEU and loss against updates when there is one) to `dest`,
    every absolute path in them cut (`portable`; the run's work dir, the bench folder's parent, as WORK).
    Refuses to write into a folder that already holds a kept run."""
    if os.path.exists(os.path.join(dest, "bench.json")):
        raise FileExistsError(f"{dest} already holds a kept run: give another --output or remove it")
    work = os.path.dirname(os.path.abspath(bench_dir))
    os.makedirs(dest, exist_ok=True)
    for name in sorted(os.listdir(bench_dir)):
        if not KEPT.match(name):
            continue
        if name.endswith((".json", ".md")):
            with open(os.path.join(bench_dir, name), encoding="utf-8") as f:
                text = portable(f.read(), work)
            with open(os.path.join(dest, name), "w", encoding="utf-8") as f:
                f.write(text)
        else:
            shutil.copyfile(os.path.join(bench_dir, name), os.path.join(dest, name))
    return dest
