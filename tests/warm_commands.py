"""Console scripts started from a warm interpreter: a process of their own, without the seconds of imports.

Most of a test's time is fairseq commands starting: Python imports torch, scikit-learn (which
fairseq's audio tasks import), hydra, and in a training torch's compiler (which torch's optimizers
import when they are built); the work itself takes well under a second on the toy data. Here a command runs its console
script's `main` in a process that multiprocessing's forkserver forks from an interpreter that has
imported those libraries once, and nothing else: the command still imports fairseq and this plugin
itself, configures its own logging and applies the plugin's patches as it would when started from
its script; its argv, environment, working directory, output and exit code are its own. A command
run with an environment of its own (`run(..., env=...)`), or with FAIRSEQ_WD_COLD_COMMANDS=1 set for
the suite, starts a fresh interpreter: what the libraries do on import then shows in its output.
"""
import importlib
import importlib.metadata
import multiprocessing
import os
import resource
import signal
import sys
import tempfile

# imported once, in the forkserver: the libraries fairseq and the plugin import, none of which sets up logging
PRELOAD = ["torch", "torch._dynamo", "numpy", "scipy.stats", "sklearn.metrics", "sacrebleu", "omegaconf", "hydra",
           "sentencepiece", "ctranslate2", "matplotlib"]
_context = None


def entry_point(cmd):
    """(module, function) of console script `cmd`, or None when it is no console script of this venv."""
    found = importlib.metadata.entry_points(group="console_scripts", name=cmd)
    return next(((ep.module, ep.attr) for ep in found), None)


def warm(cmd, env):
    """Whether `cmd` may start warm: a console script of this venv, run with the suite's environment."""
    return not env and not os.environ.get("FAIRSEQ_WD_COLD_COMMANDS") and entry_point(cmd) is not None


def fill_disk(at):
    """Every file write of this process past `at` bytes fails, as on a full disk (EFBIG, not ENOSPC)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (at, resource.RLIM_INFINITY))


def _main(module, function, argv, environ, cwd, out, err, disk_full_at):
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    if disk_full_at:
        fill_disk(disk_full_at)
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY)
        os.dup2(target, fd)
        os.close(target)
    sys.argv = argv
    main = getattr(importlib.import_module(module), function)
    sys.exit(main())


def run_warm(cmd, args, environ, cwd, disk_full_at=None):
    """Runs console script `cmd` with `args` in a forked warm process: (returncode, stdout, stderr)."""
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    module, function = entry_point(cmd)
    with tempfile.TemporaryDirectory() as folder:
        out, err = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
        for path in (out, err):
            open(path, "w").close()
        argv = [os.path.join(os.path.dirname(sys.executable), cmd), *map(str, args)]
        proc = _context.Process(target=_main, args=(module, function, argv, environ, str(cwd), out, err, disk_full_at))
        proc.start()
        proc.join()
        with open(out) as o, open(err) as e:
            return proc.exitcode, o.read(), e.read()
