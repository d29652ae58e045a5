"""The pipeline's step runner: numbered steps, this venv's commands, and `done` marks.

A step's folder counts as finished only once its `done` mark exists, written after its output is
whole; so a killed run redoes the step (fairseq-train itself resumes from checkpoint_last.pt).
"""
import os
import subprocess
import sys
import time

BIN = os.path.dirname(sys.executable)


class StepRunner:
    def __init__(self, work):
        self.work = work
        self.step_no = 0

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def step(self, title):
        self.step_no += 1
        print(f"\n=== [{self.step_no}] {title} ({time.strftime('%H:%M:%S')}) ===", flush=True)

    @staticmethod
    def is_done(folder):
        if os.path.exists(os.path.join(folder, "done")):
            print("done already:", folder)
            return True
        return False

    @staticmethod
    def mark_done(folder):
        open(os.path.join(folder, "done"), "w").close()

    def sh(self, *cmd, log=None):
        """Runs a command of this venv; with `log`, the command appends its output to that file itself
        (the learning curves: a kill of the pipeline loses none of it), shown as it grows."""
        print("+", " ".join(map(str, cmd)), flush=True)
        exe = os.path.join(BIN, cmd[0])
        argv = [exe if os.path.exists(exe) else cmd[0], *map(str, cmd[1:])]
        if log is None:
            subprocess.run(argv, check=True)
            return
        with open(log, "ab") as out, open(log, "rb") as shown:
            shown.seek(0, os.SEEK_END)
            proc = subprocess.Popen(argv, stdout=out, env=dict(os.environ, PYTHONUNBUFFERED="1"))
            while proc.poll() is None:
                sys.stdout.buffer.write(shown.read())
                sys.stdout.flush()
                time.sleep(0.2)
            sys.stdout.buffer.write(shown.read())
            sys.stdout.flush()
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, argv)
