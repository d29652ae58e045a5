"""The pipeline's step runner: numbered steps, this venv's commands, and keyed marks.

Every step writes one output (a folder or a file) and a mark beside it, OUTPUT.step.json, holding the
step's key (keys.py) and whether the output is whole. A rerun skips a step only when its mark is done
for the same key. A step whose key changed is redone: its old output is moved aside to
WORK/stale/NAME@KEY (nothing is deleted; a later run whose key matches it again takes it back), and the
log says what changed. A step killed midway, rerun with the same key, resumes (fairseq-train from its
checkpoint_last.pt, distill-data from its finished chunks).
"""
import json
import os
import shlex
import subprocess
import sys
import time

from . import jobs, keys
from .inputs import PACKAGE

BIN = os.path.dirname(sys.executable)
LAUNCHER = "FAIRSEQ_WD_LAUNCHER"


def command(*cmd):
    """The argv that runs `cmd`: its first word as this venv's console script (else as found on PATH),
    after the words of $FAIRSEQ_WD_LAUNCHER when that is set (e.g. `nice -n 10`, `numactl -N 0`)."""
    exe = os.path.join(BIN, cmd[0])
    return [*shlex.split(os.environ.get(LAUNCHER, "")), exe if os.path.exists(exe) else cmd[0], *map(str, cmd[1:])]


def run(cmd, **kwargs):
    """subprocess.run of `command(*cmd)`; a failure raises CalledProcessError naming `cmd`, not the launcher."""
    proc = subprocess.run(command(*cmd), **kwargs)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, list(map(str, cmd)), proc.stdout, proc.stderr)
    return proc


class StepRunner:
    def __init__(self, work, redo=(), jobs=1):
        self.work = os.path.abspath(work)
        self.jobs = jobs        # commands run in up to this many parallel jobs (jobs.py)
        self.step_no = 0
        self.keys = {}          # output -> key, of every step met in this run (inputs of later steps)
        self.pending = {}       # output -> record, of the steps begun and not finished
        self.redo = set(redo)   # step names (an output's base name) redone whatever their key
        self._fingerprints = {}

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def step(self, title):
        self.step_no += 1
        print(f"\n=== [{self.step_no}] {title} ({time.strftime('%H:%M:%S')}) ===", flush=True)

    # -- keys ------------------------------------------------------------------------------------------
    def portable(self, value):
        return str(value).replace(self.work + os.sep, "$WORK/").replace(PACKAGE, "$PACKAGE")

    def key_of(self, path):
        """An earlier step's key for its output (or a file in it), else the content of a file from outside."""
        path = os.path.abspath(path)
        made = [o for o in self.keys if path == o or path.startswith(o + os.sep)]
        if made:
            return self.keys[max(made, key=len)]
        if path not in self._fingerprints:
            self._fingerprints[path] = keys.fingerprint(path)
        return self._fingerprints[path]

    def inputs_of(self, argv, output):
        """The existing absolute paths a command line names (an option's value too, as in
        --model=NAME=PATH), but its own output and the plugin's --user-dir: {portable path: key}. The
        pipeline names every file by its absolute path; a bare word (train, adam) is never an input."""
        found = {}
        for token in map(str, argv):
            for candidate in {token, token.rsplit("=", 1)[-1]}:
                full = os.path.normpath(candidate)
                if (os.path.isabs(candidate) and os.path.exists(full) and full != PACKAGE and full != output
                        and not full.startswith(output + os.sep)):
                    found[self.portable(full)] = self.key_of(full)
        return found

    # -- marks -----------------------------------------------------------------------------------------
    @staticmethod
    def mark_path(output):
        return output + ".step.json"

    def read_mark(self, output):
        try:
            with open(self.mark_path(output)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def write_mark(self, output, record, done):
        """A finished output's mark holds when it was made: with the key it is what later steps know this
        one by, so a step redone with the same key (--redo) still redoes the steps that read it."""
        mark = self.mark_path(output)
        made = time.time() if done else None
        with open(mark + ".tmp", "w") as f:
            json.dump({"key": keys.digest(record), "done": done, "made": made, "record": record}, f, indent=1)
        os.replace(mark + ".tmp", mark)
        if done:
            self.keys[output] = made_key(keys.digest(record), made)

    def begin(self, output, what, inputs=None, restore=True):
        """True when `output` is done for the key of `what` (its command line or settings) and `inputs`
        ({portable path: key}; default: the paths the command line names). Otherwise the step is to be
        (re)done: a stale output is moved aside, or (`restore`) a stashed one with this key taken back."""
        output = os.path.abspath(output)
        if isinstance(what, (list, tuple)):
            inputs = self.inputs_of(what, output) if inputs is None else inputs
            what = [self.portable(t) for t in what]
        record = keys.record(what, inputs or {})
        key = keys.digest(record)
        self.keys[output] = key
        self.pending[output] = record
        mark, exists = self.read_mark(output), os.path.exists(output)
        name = os.path.basename(output)
        if mark and mark.get("key") == key and exists and name not in self.redo:
            if mark.get("done"):
                print("done already:", output)
                self.keys[output] = made_key(key, mark.get("made"))
                return True
            print("resuming:", output)
            return False
        if exists or mark:
            why = [f"--redo {name}"] if mark and mark.get("key") == key else keys.changes(mark and mark.get("record"), record)
            print(f"redoing {output}: " + "; ".join(why), flush=True)
            self.stash(output, mark)
        if restore and self.unstash(output, key):
            return True
        self.write_mark(output, record, done=False)
        return False

    def finish(self, output):
        output = os.path.abspath(output)
        self.write_mark(output, self.pending.pop(output), done=True)

    def stash(self, output, mark):
        """Moves a stale output and its mark to WORK/stale/NAME@KEY."""
        mark_file = self.mark_path(output)
        if not os.path.exists(output):
            os.remove(mark_file)
            return
        aside = os.path.join(self.path("stale"), os.path.relpath(output, self.work)) + f"@{(mark or {}).get('key', 'unkeyed')}"
        os.makedirs(os.path.dirname(aside), exist_ok=True)
        if os.path.exists(aside):  # the same stale key again (a --redo): keep both copies
            aside += f".{sum(1 for f in os.listdir(os.path.dirname(aside)) if f.startswith(os.path.basename(aside)))}"
        os.replace(output, aside)
        if os.path.exists(mark_file):
            os.replace(mark_file, self.mark_path(aside))
        print(f"moved the stale {output} aside to {aside}")

    def unstash(self, output, key):
        """Takes back a finished output of this key from WORK/stale (settings changed, then changed back)."""
        aside = os.path.join(self.path("stale"), os.path.relpath(output, self.work)) + f"@{key}"
        mark = self.read_mark(aside)
        if not (mark and mark.get("done") and os.path.exists(aside) and os.path.basename(output) not in self.redo):
            return False
        os.makedirs(os.path.dirname(output), exist_ok=True)
        os.replace(aside, output)
        os.replace(self.mark_path(aside), self.mark_path(output))
        print(f"done already: {output} (taken back from {aside}: made with the same key)")
        self.keys[output] = made_key(key, mark.get("made"))
        return True

    # -- commands --------------------------------------------------------------------------------------
    def keyed(self, output, *cmd, log=None, whole=False):
        """A command that writes `output`, run unless done for its key; returns `output`. `whole`: the
        command writes its output whole or not at all (aside, then renamed), so an output of this key is
        complete even when a kill came between the command's end and the mark."""
        if not self.begin(output, cmd):
            if not (whole and os.path.exists(output)):
                self.sh(*cmd, log=log)
            self.finish(output)
        return output

    def sh(self, *cmd, log=None, env=None):
        """Runs a command of this venv, with the variables of `env` added to its environment; with `log`,
        the command appends its output to that file itself (the learning curves: a kill of the pipeline
        loses none of it), shown as it grows."""
        print("+", " ".join(map(str, cmd)), flush=True)
        env = dict(jobs.environment(self.jobs) or os.environ, **(env or {}))
        if log is None:
            run(cmd, env=env)
            return
        env["PYTHONUNBUFFERED"] = "1"
        if jobs.current() is not None:  # one of several jobs at once: its output goes to its log only
            print(f"  its output: {log}", flush=True)
            with open(log, "ab") as out:
                run(cmd, stdout=out, env=env)
            return
        with open(log, "ab") as out, open(log, "rb") as shown:
            shown.seek(0, os.SEEK_END)
            proc = subprocess.Popen(command(*cmd), stdout=out, env=env)
            while proc.poll() is None:
                sys.stdout.buffer.write(shown.read())
                sys.stdout.flush()
                time.sleep(0.2)
            sys.stdout.buffer.write(shown.read())
            sys.stdout.flush()
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, list(map(str, cmd)))


def made_key(key, made):
    """What later steps know a finished step by: its key and when it was made (marks written before
    fairseq-wd 0.2.0's --redo hold no time: their key alone)."""
    return key if made is None else f"{key}@{made}"
