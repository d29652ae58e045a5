"""fairseq-generate as the bench runs it (`python -m fairseq_wd.bench.generate ARGS`, fairseq-generate's
own arguments): its first batch is decoded once untimed, and each timed batch's seconds and tokens are
printed to stderr for the bench to read."""
import sys
import time

WARMUP, BATCH = "fairseq-wd warm-up seconds:", "fairseq-wd batch seconds, tokens:"


def warm_generate():
    """fairseq-generate's own main on sys.argv. Whatever the task's inference_step, the generator decodes
    the first batch once before the clock starts (the clock restarts after that warm-up); the warm-up's
    seconds, then each timed batch's seconds and output tokens (</s> included) go to stderr, the meter
    the bench reads (not fairseq's log, whose stream depends on which module configured logging first)."""
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

    setup_task = generate.tasks.setup_task

    def setup_warm(*args, **kwargs):
        task = setup_task(*args, **kwargs)
        build = task.build_generator
        task.build_generator = lambda *a, **k: warmed(build(*a, **k))
        return task

    generate.StopwatchMeter, generate.tasks.setup_task = Clock, setup_warm
    generate.cli_main()


if __name__ == "__main__":
    warm_generate()
