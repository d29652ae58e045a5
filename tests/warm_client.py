"""`python -S warm_client.py COMMAND ARGS...` runs COMMAND as if it were started itself, in a process
that the suite's warm server (warm_commands.py) forks: with this process's stdin, stdout, stderr,
environment and working directory. It exits with the command's exit code (1 when a signal killed it);
SIGTERM, SIGINT and SIGHUP are passed on to the command, and when this process dies (SIGKILL included)
the command and the processes it started are killed. A request the server does not take (warm_commands.py),
or no server at $FAIRSEQ_WD_TEST_WARM_SERVER: COMMAND is executed in this process instead.

The pipeline's tests set FAIRSEQ_WD_LAUNCHER to `python -S warm_client.py`, so that the commands the
pipeline runs start without seconds of imports each. Standard library only: it starts in milliseconds.
"""
import json
import os
import signal
import socket
import struct
import sys

ADDRESS = "FAIRSEQ_WD_TEST_WARM_SERVER"
CODE = struct.Struct("!i")


def receive(conn, n):
    """`n` bytes from `conn`, or b'' when it closed first."""
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


def request(argv, env, cwd, fds, disk_full_at=None):
    """Asks the server to run `argv` with `fds` as its stdin, stdout and stderr: (the connection, the
    command's pid, which leads its process group), or None when no server is there or it does not take
    the request."""
    address = env.get(ADDRESS)
    if not address:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(address)
    except OSError:
        conn.close()
        return None
    body = json.dumps({"argv": argv, "env": env, "cwd": cwd, "disk_full_at": disk_full_at}).encode()
    socket.send_fds(conn, [CODE.pack(len(body))], fds)
    conn.sendall(body)
    pid = CODE.unpack(receive(conn, CODE.size) or CODE.pack(-1))[0]
    if pid < 0:
        conn.close()
        return None
    return conn, pid


def exit_code(conn):
    """The command's exit code; 1 when it died without one (killed)."""
    data = receive(conn, CODE.size)
    conn.close()
    return CODE.unpack(data)[0] if data else 1


def main():
    argv = sys.argv[1:]
    passed_on = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    signal.pthread_sigmask(signal.SIG_BLOCK, passed_on)  # held until the command is there to take them
    started = request(argv, dict(os.environ), os.getcwd(), [0, 1, 2])
    if started is None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, passed_on)
        os.execvp(argv[0], argv)
    conn, pid = started

    def pass_on(signum, frame):
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            pass

    for signum in passed_on:
        signal.signal(signum, pass_on)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, passed_on)
    sys.exit(exit_code(conn))


if __name__ == "__main__":
    main()
