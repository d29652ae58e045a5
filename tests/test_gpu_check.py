"""The GPU path without a GPU: the pipeline hands `--fp16` to the teacher output and the bench, the bench
says its precision, examples/gpu_check.sh reports each part (its CPU parts on a finished pipeline run: in
test_bench_pipeline.py), and the plugin makes no tensor on the default device inside a training or decoding step."""
import os
import re
import shlex
import subprocess
import sys

import torch
from torch.overrides import TorchFunctionMode

import warm_commands
from utils import BIN, REPO, STUDENT, USER_DIR

import fairseq_wd  # noqa: F401
from fairseq import options, tasks
from fairseq_wd.bench import run as bench_run
from fairseq_wd.cli import bench, distill_data
from fairseq_wd.bench.report import markdown_table
from fairseq_wd.cli.pipeline import get_parser
from fairseq_wd.criterions.logit_kd import LogitKDCriterion
from fairseq_wd.criterions.pkd import PKDCriterion
from fairseq_wd.criterions.ptp import PTPCriterion
from fairseq_wd.criterions.weight_distillation import WeightDistillationCriterion
from fairseq_wd.pipeline.experiment import Pipeline
from test_bench_report import report

SCRIPT = os.path.join(REPO, "examples", "gpu_check.sh")


def commands_of(tmp_path, monkeypatch, *argv):
    """The teacher-output and bench commands the pipeline would run with `argv`, not run."""
    os.makedirs(tmp_path)
    pipe = Pipeline(get_parser().parse_args(["--work-dir", str(tmp_path), *argv]))
    commands = {}

    def sh(*cmd, log=None, env=None):
        cmd = [str(c) for c in cmd]
        commands[cmd[0]] = cmd
        if cmd[0] == "fairseq-wd-bench":
            out = cmd[cmd.index("--output-dir") + 1]
            os.makedirs(out)
            open(os.path.join(out, "bench.md"), "w").close()

    monkeypatch.setattr(pipe, "sh", sh)
    pipe.teacher_output("teacher.pt")
    pipe.bench({"teacher": ["teacher.pt"], "TINY KD": ["kd.pt"]})
    return commands["fairseq-wd-distill-data"], commands["fairseq-wd-bench"]


def test_pipeline_runs_teacher_output_and_bench_at_the_training_precision(tmp_path, monkeypatch):
    distill, bench_cmd = commands_of(tmp_path / "fp16", monkeypatch, "--fp16",
                                     "--bench-args=--lowercase --generate-args='--unkpen 1'")
    assert options.parse_args_and_arch(distill_data.get_parser(), distill[1:]).fp16
    args, unknown = bench.get_parser().parse_known_args(bench_cmd[1:])
    assert not unknown and args.lowercase
    extra, parsed = bench_run.generate_args(args)  # what the bench hands every fairseq row
    assert parsed.fp16 and parsed.unkpen == 1, "--fp16 added to the user's --generate-args, which are kept"

    distill, bench_cmd = commands_of(tmp_path / "fp32", monkeypatch)
    assert not options.parse_args_and_arch(distill_data.get_parser(), distill[1:]).fp16
    assert not any("--fp16" in c for c in bench_cmd)


def test_bench_footer_says_the_fairseq_rows_precision():
    r = report()
    assert "fairseq rows in fp32 (CTranslate2 rows: the compute type in their name)" in markdown_table(r)
    r["settings"]["generate_args"] = ["--unkpen", "1", "--fp16"]
    assert "fairseq rows in fp16 (CTranslate2 rows: the compute type in their name)" in markdown_table(r)


def gpu_check(tmp_path, *pipeline_args, timeout=900):
    return subprocess.run(["bash", SCRIPT, "--cpu", "--work-dir", str(tmp_path / "check"), "--", *pipeline_args],
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PATH=f"{BIN}:{os.environ['PATH']}",
                                   **warm_commands.launcher_environment()))


def test_gpu_check_fails_when_the_pipeline_fails(tmp_path):
    proc = gpu_check(tmp_path, "--methods", "nonsense", timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"^FAIL pipeline: exit 2, see .*pipeline\.log", proc.stdout, re.M)
    assert "FAIL teacher (fp32)" in proc.stdout and "PASS" not in proc.stdout
    assert shlex.split(proc.stdout.splitlines()[-1])[1:4] == ["0", "passed,", "9"]


# -- tensors the plugin makes inside a step ------------------------------------------------------------------
FACTORIES = {"zeros", "ones", "full", "empty", "arange", "tensor", "as_tensor", "rand", "randn", "randint", "eye",
             "linspace", "scalar_tensor"}
PLUGIN = os.path.join(REPO, "fairseq_wd") + os.sep


class DefaultDeviceFactories(TorchFunctionMode):
    """Records the plugin's calls of torch's tensor factories without `device=`: on CUDA such a tensor
    lands on the CPU, beside tensors on the GPU. Factories called by fairseq or torch are theirs."""

    def __init__(self, under=PLUGIN):
        super().__init__()
        self.under, self.found = under, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in FACTORIES and "device" not in kwargs:
            frame = sys._getframe(1)
            while frame and os.sep + "torch" + os.sep in frame.f_code.co_filename:
                frame = frame.f_back
            if frame and frame.f_code.co_filename.startswith(self.under):
                self.found.append(f"{os.path.relpath(frame.f_code.co_filename, REPO)}:{frame.f_lineno} "
                                  f"torch.{func.__name__}")
        return func(*args, **kwargs)


def test_the_mode_sees_a_factory_without_device():
    with DefaultDeviceFactories(under=os.path.dirname(os.path.abspath(__file__))) as mode:
        torch.zeros(2, device="cpu")
        torch.zeros(2)
        torch.zeros_like(torch.ones(2, device="cpu"))
    assert len(mode.found) == 1 and mode.found[0].startswith("tests/test_gpu_check.py:")


def test_training_and_decoding_steps_make_no_tensor_on_the_default_device(data_bin, teacher):
    """A training step (forward and backward) of logit_kd, pkd and ptp on a plain student, of the
    weight_distillation criterion with its KD and PKD terms on the phase-1 model, and a beam-search step
    of the phase-1 model (materialized first): no plugin code calls a factory without `device=`."""
    common = [str(data_bin), "--user-dir", USER_DIR, "--teacher-path", str(teacher), *STUDENT]
    steps = []
    for task_name in ("distillation", "weight_distillation"):
        args = options.parse_args_and_arch(options.get_training_parser(), [*common, "--task", task_name])
        task = tasks.setup_task(args)
        task.load_dataset("valid")
        model = task.build_model(args)
        ds = task.dataset("valid")
        sample = ds.collater([ds[i] for i in range(4)])
        if task_name == "distillation":
            criteria = [LogitKDCriterion(task, False, 0.1, 0.5, 2.0, 5),
                        PKDCriterion(task, False, 0.1, 0.5, 2.0, 0, 1.0, "skip", "skip"), PTPCriterion(task, 0.9, 0.5)]
        else:
            criteria = [WeightDistillationCriterion(task, False, 0.1, 0.5, 2.0, 0, 1.0, "skip", "skip")]
            steps.append(lambda task=task, model=model, sample=sample, args=args: task.inference_step(
                task.build_generator([model], args), [model], sample))
        steps += [lambda c=c, model=model, sample=sample: c(model, sample)[0].backward() for c in criteria]
    with DefaultDeviceFactories() as mode:
        for step in steps:
            step()
    assert not mode.found, "\n".join(mode.found)
