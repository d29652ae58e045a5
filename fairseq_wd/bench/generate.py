"""fairseq-generate as the bench runs it, in `python -m fairseq_wd.bench.generate`: one process that runs
fairseq-generate once per request (`serve`), so that Python, torch and fairseq are imported once per bench,
not once per run. Each run's first batch is decoded once untimed, and each timed batch's seconds and
tokens are printed to stderr for the bench to read."""
import contextlib
import json
import os
import sys
import time
import traceback

WARMUP, BATCH = "fairseq-wd warm-up seconds:", "fairseq-wd batch seconds, tokens:"


def warm_generate():
    """fairseq-generate's own main on sys.argv. Whatever the task's inference_step, the generator decodes
    the first batch once before the clock starts (the clock restarts after that warm-up); the warm-up's
    seconds, then each timed batch's seconds and output tokens (</s> included) go to stderr, the meter
    the bench reads (not fairseq's log, whose stream depends on which module configured logging first).
    fairseq-generate's module is as it was once this returns."""
    import fairseq_cli.generate as generate
    from fairseq.logging.meters import StopwatchMeter

    clocks, warm = [], []

    class Clock(StopwatchMeter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            clocks.append(self)

        def stop(self, n=1, prehook=None):
            before = self.sum
            super().stop(n, prehook)
            print(f"{BATCH} {self.sum - before:.6f} {n}", file=sys.stderr, flush=True)

    def warmed(generator):
        decode = generator.generate

        def generate_warm(*args, **kwargs):
            if not warm:
                start = time.perf_counter()
                decode(*args, **kwargs)
                warm.append(time.perf_counter() - start)
                print(f"{WARMUP} {warm[0]:.6f}", file=sys.stderr, flush=True)
                for clock in clocks:
                    clock.start()
            return decode(*args, **kwargs)

        generator.generate = generate_warm
        return generator

    meter, setup_task = generate.StopwatchMeter, generate.tasks.setup_task

    def setup_warm(*args, **kwargs):
        task = setup_task(*args, **kwargs)
        build = task.build_generator
        task.build_generator = lambda *a, **k: warmed(build(*a, **k))
        return task

    generate.StopwatchMeter, generate.tasks.setup_task = Clock, setup_warm
    try:
        generate.cli_main()
    finally:
        generate.StopwatchMeter, generate.tasks.setup_task = meter, setup_task


@contextlib.contextmanager
def output_to(stdout, stderr):
    """File descriptors 1 and 2 (Python's prints and the libraries' own writes alike) go to these files."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    for fd, path in ((1, stdout), (2, stderr)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, old in zip((1, 2), saved):
            os.dup2(old, fd)
            os.close(old)


def run_once(argv):
    """`warm_generate` on fairseq-generate arguments `argv`: the exit code a process of its own would
    end with (a traceback on stderr for an error, as Python prints one)."""
    sys.argv = ["fairseq-generate", *argv]
    try:
        warm_generate()
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    except Exception:  # noqa: BLE001 (reported as the exit code and traceback of a failed process)
        traceback.print_exc()
        return 1
    return 0


def serve():
    """Each stdin line, {"argv": [...], "stdout": PATH, "stderr": PATH}, is one fairseq-generate run with
    its output in those files; its exit code is answered on a line of stdout once the run is done. Ends at
    the end of stdin (the bench closed it, or ended). Between runs stdout goes to stderr, so that nothing
    but the answers reaches the bench's pipe."""
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    for line in sys.stdin:
        request = json.loads(line)
        with output_to(request["stdout"], request["stderr"]):
            code = run_once(request["argv"])
        answers.write(f"{code}\n")
        answers.flush()


if __name__ == "__main__":
    serve()
