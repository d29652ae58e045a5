"""Console scripts started from a warm interpreter: a process of their own, without the seconds of imports.

Most of a test's time is fairseq commands starting: Python imports torch, scikit-learn (which
fairseq's audio tasks import), hydra, and in a training torch's compiler (which torch's optimizers
import when they are built); the work itself takes well under a second on the toy data. Here a server,
one per test process, imports those libraries once and nothing else, and forks a process per command:
the command still imports fairseq and this plugin itself, configures its own logging and applies the
plugin's patches as it would when started from its script; its argv, environment, working directory,
stdin, stdout, stderr and exit code are its own (a command killed by a signal exits 1), it runs in a
process group of its own, and that group is killed when whoever asked for the command dies.

Commands reach the server through `run_warm` (utils.run) and through warm_client.py: the commands a
warm command runs in turn go through it (`launcher_environment`: the pipeline's, by FAIRSEQ_WD_LAUNCHER;
a script's, by `client_folder` first on its PATH). The server takes only this venv's console scripts,
with the PYTHON* variables it started with (the interpreter reads those as it starts); anything else,
and everything under FAIRSEQ_WD_COLD_COMMANDS=1, starts a fresh interpreter.
"""
import atexit
import importlib
import importlib.metadata
import io
import json
import os
import resource
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import types

import warm_client

# imported once, in the server: the libraries fairseq and the plugin import, none of which sets up logging
PRELOAD = ["torch", "torch._dynamo", "numpy", "scipy.stats", "sklearn.metrics", "sacrebleu", "omegaconf", "hydra",
           "sentencepiece", "ctranslate2", "matplotlib"]
CLIENT = [sys.executable, "-S", os.path.join(os.path.dirname(os.path.abspath(__file__)), "warm_client.py")]
BIN = os.path.dirname(sys.executable)
COLD = bool(os.environ.get("FAIRSEQ_WD_COLD_COMMANDS"))
ENVIRON = dict(os.environ)  # the suite's, before any test changes it: the server's
_server = {}


def fill_disk(at):
    """Every file write of this process past `at` bytes fails, as on a full disk (EFBIG, not ENOSPC)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (at, resource.RLIM_INFINITY))


def interpreter_variables(env):
    """The variables the interpreter reads as it starts (PYTHONUNBUFFERED aside: each command sets up its own)."""
    return {k: v for k, v in env.items() if k.startswith("PYTHON") and k != "PYTHONUNBUFFERED"}


# -- the test process's side ----------------------------------------------------------------------------
def folder():
    """This test process's folder of the server's socket, log and client scripts; removed at its exit."""
    if "folder" not in _server:
        _server["folder"] = tempfile.mkdtemp(prefix="fairseq-wd-warm-")
        atexit.register(shutil.rmtree, _server["folder"], ignore_errors=True)
    return _server["folder"]


def address():
    """The socket of this test process's server, started on first use; it ends when this process does."""
    if "address" not in _server:
        path = os.path.join(folder(), "server")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(64)  # requests wait here while the server imports
        with open(os.path.join(folder(), "server.log"), "w") as log:
            proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(listener.fileno())],
                                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log, env=ENVIRON,
                                    cwd="/", pass_fds=[listener.fileno()])  # each command takes its own
        listener.close()
        atexit.register(proc.stdin.close)  # the server's end of input: it exits
        _server.update(process=proc, address=path)
    return _server["address"]


def launcher_environment():
    """The variables under which a command's own commands start warm too (none under COLD)."""
    if COLD:
        return {}
    return {warm_client.ADDRESS: address(), "FAIRSEQ_WD_LAUNCHER": shlex.join(CLIENT)}


def client_folder():
    """A folder of scripts named as this venv's console scripts, each starting its command warm (under
    COLD: the venv's own folder): put first on the PATH of a script, with `launcher_environment()`."""
    if COLD:
        return BIN
    scripts = os.path.join(folder(), "bin")
    if not os.path.isdir(scripts):
        os.mkdir(scripts)
        for ep in importlib.metadata.entry_points(group="console_scripts"):
            if os.path.exists(os.path.join(BIN, ep.name)):
                path = os.path.join(scripts, ep.name)
                with open(path, "w") as f:
                    f.write(f'#!/bin/sh\nexec {shlex.join([*CLIENT, os.path.join(BIN, ep.name)])} "$@"\n')
                os.chmod(path, 0o755)
    return scripts


def run_warm(cmd, args, environ, cwd, disk_full_at=None):
    """Runs console script `cmd` with `args` in a process the server forks: (returncode, stdout, stderr);
    None when the server does not take it (under COLD, not a console script, other PYTHON* variables)."""
    if COLD:
        return None
    argv = [os.path.join(BIN, cmd), *map(str, args)]
    env = {**environ, **launcher_environment()}
    with open(os.devnull) as stdin, tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = warm_client.request(argv, env, str(cwd), [stdin.fileno(), out.fileno(), err.fileno()], disk_full_at)
        if started is None:
            return None
        code = warm_client.exit_code(started[0])
        out.seek(0)
        err.seek(0)
        return code, out.read(), err.read()


# -- the server ----------------------------------------------------------------------------------------------
def serve(listener):
    """Imports PRELOAD, then forks a process per request until its stdin ends."""
    for name in PRELOAD:
        importlib.import_module(name)
    scripts = {ep.name: (ep.module, ep.attr) for ep in importlib.metadata.entry_points(group="console_scripts")}
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the commands are nobody's to wait for
    while True:
        ready, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1):
            return
        if listener in ready:
            conn, _ = listener.accept()
            if os.fork() == 0:
                listener.close()
                command(conn, scripts)
            conn.close()


def command(conn, scripts):
    """In a forked process: runs the requested console script as its script would, answers its exit
    code, and exits; answers -1 (and runs nothing) for a request the server does not take."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    header, fds, _, _ = socket.recv_fds(conn, warm_client.CODE.size, 3)
    request = json.loads(warm_client.receive(conn, warm_client.CODE.unpack(header)[0]))
    argv = request["argv"]
    script = scripts.get(os.path.basename(argv[0]))
    if (os.path.dirname(argv[0]) != BIN or not os.path.exists(argv[0]) or script is None
            or interpreter_variables(request["env"]) != interpreter_variables(os.environ)):
        conn.sendall(warm_client.CODE.pack(-1))
        os._exit(0)
    os.setpgid(0, 0)
    conn.sendall(warm_client.CODE.pack(os.getpid()))
    answered = threading.Event()
    threading.Thread(target=die_with, args=(conn, answered), daemon=True).start()
    os.register_at_fork(after_in_child=conn.close)  # the command's own children do not hold the connection
    become(request, fds)
    code = 1
    try:
        code = run_script(*script)
    except BaseException:
        sys.excepthook(*sys.exc_info())
    finally:
        try:
            threading._shutdown()  # as the interpreter at its end: join the command's threads, run atexit
            atexit._run_exitfuncs()
            for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
                stream.flush()
        finally:
            answered.set()
            conn.sendall(warm_client.CODE.pack(code))
            os._exit(code)


def die_with(conn, answered):
    """Kills this command's process group once whoever asked for the command is gone before its answer."""
    try:
        conn.recv(1)
    except OSError:
        pass
    if not answered.is_set():
        os.killpg(0, signal.SIGKILL)


def become(request, fds):
    """This process takes the request's stdin, stdout, stderr, environment, directory and argv, with a
    `__main__` of its script's own (what multiprocessing's spawn runs again)."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.argv = request["argv"]
    sys.path.insert(0, os.path.dirname(sys.argv[0]))  # a script's folder, as when started from it
    main = types.ModuleType("__main__")
    main.__file__ = sys.argv[0]
    sys.modules["__main__"] = main
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    encoding = sys.stdout.encoding
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding)

    def output(fd, errors, line_buffering):
        raw = io.FileIO(fd, "w", closefd=False)
        return io.TextIOWrapper(raw if unbuffered else io.BufferedWriter(raw), encoding, errors,
                                line_buffering=line_buffering or os.isatty(fd), write_through=unbuffered)

    sys.stdout = sys.__stdout__ = output(1, "strict", False)
    sys.stderr = sys.__stderr__ = output(2, "backslashreplace", True)
    if "OMP_NUM_THREADS" in os.environ:
        import torch
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    if request["disk_full_at"]:
        fill_disk(request["disk_full_at"])


def run_script(module, function):
    """Console script `module:function`'s exit code, as `sys.exit(function())` gives it."""
    try:
        result = getattr(importlib.import_module(module), function)()
    except SystemExit as e:
        result = e.code
    if result is None or isinstance(result, int):
        return result or 0
    print(result, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.path.pop(0)  # this folder: not on a command's path
    serve(socket.socket(fileno=int(sys.argv[1])))
