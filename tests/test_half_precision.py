"""Half precision: the criteria's losses, the WD parameter generator and the trainings that use them.

fairseq runs `--fp16` on a CPU only without flattened gradients (`--fp16-no-flatten-grads`: its flat
FP16Optimizer asks CUDA for the device), and its overflow handler calls `.cuda()`, so the trainings here
start at a loss scale that does not overflow on these batches: an inf or NaN gradient fails the run.
fairseq's `--bf16` means a TPU, so bfloat16 is checked on the tensors directly."""
import math
import os
import re

import pytest
import torch

from utils import STUDENT, TRAIN_FLAGS, USER_DIR, model, run

import fairseq_wd  # noqa: F401
from fairseq import checkpoint_utils
from fairseq_wd.criterions.kd_loss import kd_loss, patient_loss, teacher_topk
from fairseq_wd.criterions.ptp import ptp_labels
from fairseq_wd.models.weight_distillation import WeightDistillationModel

HALF = [torch.float16, torch.bfloat16]
FP16 = ["--fp16", "--fp16-no-flatten-grads", "--fp16-init-scale", "8"]


# -- the losses and the generator on half tensors -----------------------------------------------------------

def rounded(x, dtype):
    """`x` as the half tensor a half model would hand over, and the same values in fp32."""
    h = x.to(dtype)
    return h, h.float()


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("k", [0, 6])
def test_kd_loss_of_half_logits_is_computed_in_fp32(dtype, k):
    """Half student and teacher logits (full vocabulary or top-K) give the fp32 loss of the same values,
    and a finite gradient of the student's dtype."""
    torch.manual_seed(0)
    student, student32 = rounded(3 * torch.randn(4, 7, 50), dtype)
    teacher, teacher32 = rounded(3 * torch.randn(4, 7, 50), dtype)
    mask = torch.ones(4, 7, dtype=torch.bool)
    mask[1, 4:] = False
    student.requires_grad_()
    loss = kd_loss(student, *teacher_topk(teacher, k), mask, 2.0)
    expected = kd_loss(student32, *teacher_topk(teacher32, k), mask, 2.0)
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert student.grad.dtype == dtype and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
    assert (student.grad[1, 4:] == 0).all(), "padding gets no gradient"


@pytest.mark.parametrize("dtype", HALF)
def test_patient_loss_and_ptp_labels_of_half_states(dtype):
    torch.manual_seed(0)
    states = [rounded(torch.randn(5, 3, 16), dtype) for _ in range(2)]
    teacher = [rounded(torch.randn(5, 3, 16), dtype) for _ in range(2)]
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[0, :2] = False
    halves = [h.requires_grad_() for h, _ in states]
    loss = patient_loss(halves, [h for h, _ in teacher], mask)
    expected = patient_loss([f for _, f in states], [f for _, f in teacher], mask)
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert all(h.grad.dtype == dtype and torch.isfinite(h.grad).all() for h in halves)

    logits, logits32 = rounded(4 * torch.randn(3, 5, 30), dtype)
    target = logits32.argmax(-1)
    target[0] = 4  # some wrong top-1 predictions
    assert torch.equal(ptp_labels(logits, target, 0.9, 0.5), ptp_labels(logits32, target, 0.9, 0.5))


def wd_model(seed=0):
    dims = ["--encoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32", "--encoder-layers", "2",
            "--encoder-attention-heads", "2", "--decoder-attention-heads", "2"]
    torch.manual_seed(seed)
    teacher = model("wd_transformer_base", *dims, "--decoder-layers", "2", device="cpu")
    student = model("wd_transformer_tiny", *dims, "--decoder-layers", "1", device="cpu")
    torch.manual_seed(seed)
    return WeightDistillationModel(student, teacher.state_dict()).eval()


@pytest.mark.parametrize("dtype,tolerance", [(torch.float16, 0.005), (torch.bfloat16, 0.03)])
def test_generator_and_phase1_model_in_half(dtype, tolerance):
    """The generator and the phase-1 model cast to half: generated tensors and output of that dtype,
    finite and close to fp32; every generator parameter gets a finite gradient of that dtype; the
    student's own parameters none; its state loads into an fp32 model (same teacher) exactly."""
    wd32, wd = wd_model(), wd_model().to(dtype)
    src = torch.randint(4, 100, (3, 6))
    lengths = torch.full((3,), 6)
    prev = torch.randint(4, 120, (3, 5))
    made32, made = wd32.generator(), wd.generator()
    for key, value in made.items():
        assert value.dtype == dtype and torch.isfinite(value).all(), key
        scale = made32[key].abs().max().clamp(min=1)
        assert (value.float() - made32[key]).abs().max() <= tolerance * scale, key
    out = wd(src, lengths, prev)[0]
    out32 = wd32(src, lengths, prev)[0]
    assert out.dtype == dtype and torch.isfinite(out).all()
    lprobs, lprobs32 = out.float().log_softmax(-1), out32.log_softmax(-1)
    assert (lprobs - lprobs32).abs().max() < 4 * tolerance
    out.float().logsumexp(-1).sum().backward()
    named = dict(wd.generator.named_parameters())
    assert named and all(p.grad is not None and p.grad.dtype == dtype and torch.isfinite(p.grad).all()
                         for p in named.values()), [n for n, p in named.items() if p.grad is None]
    assert sum(p.grad.float().abs().sum() for p in named.values()) > 0
    assert all(p.grad is None for p in wd.student.parameters())

    with torch.no_grad():
        wd.materialize_()
        direct = wd.student(src, lengths, prev)[0]
    assert torch.equal(direct, wd(src, lengths, prev)[0]), "the materialized student is the phase-1 model"
    back = wd_model()
    back.load_state_dict(wd.state_dict())
    assert all(p.dtype == torch.float32 for p in back.parameters())
    assert all(torch.equal(p, q.float()) for p, q in zip(back.generator.parameters(), wd.generator.parameters()))


# -- fairseq-train --fp16 with each criterion -----------------------------------------------------------------

@pytest.fixture(scope="module")
def topk_bin(data_bin, teacher, tmp_path_factory):
    """The teacher's output for train with its top-4 log-probabilities, written under --fp16."""
    dest = tmp_path_factory.mktemp("kd-fp16") / "kd"
    run("fairseq-wd-distill-data", data_bin, "--path", teacher, "--gen-subset", "train", "--beam", "1",
        "--batch-size", "128", "--cpu", "--fp16", "--dest", dest, "--save-topk", "4")
    return dest


RUNS = {
    "wd_phase1": ["--task", "weight_distillation", "--criterion", "weight_distillation", "--kd-alpha", "0.5",
                  "--pkd-beta", "1"],
    "logit_kd": ["--task", "distillation", "--criterion", "logit_kd", "--kd-alpha", "0.5"],
    "logit_kd_offline_topk": ["--task", "distillation", "--criterion", "logit_kd", "--kd-alpha", "0.5"],
    "pkd": ["--task", "distillation", "--criterion", "pkd", "--kd-topk", "5", "--pkd-beta", "1"],
    "ptp": ["--task", "distillation", "--criterion", "ptp"],
}
# whose parameters must get gradients: the generator, PKD's width projection, PTP's head, the student
TRAINED = {"wd_phase1": ("generator.", "criterion.projections.decoder."), "pkd": ("criterion.projections.decoder.",),
           "ptp": ("criterion.head.",), "logit_kd": ("decoder.", "encoder."),
           "logit_kd_offline_topk": ("decoder.", "encoder.")}


@pytest.mark.parametrize("name", list(RUNS))
def test_fp16_training(name, data_bin, teacher, request, tmp_path):
    """Four updates under fairseq's --fp16 (half model and criterion, fp32 master weights): finite losses
    (and KD / PKD terms), a finite non-zero gradient for every parameter of the generator, PKD's projection,
    PTP's head or the student, and a checkpoint that loads into an fp32 model with a finite output."""
    offline = name == "logit_kd_offline_topk"
    data = request.getfixturevalue("topk_bin") if offline else data_bin
    teacher_flags = [] if offline else ["--teacher-path", teacher]
    labels = [] if name == "ptp" else ["--label-smoothing", "0.1"]
    proc = run("fairseq-train", data, "--user-dir", USER_DIR, "--save-dir", tmp_path, "--max-update", "4",
               *STUDENT, *TRAIN_FLAGS, *RUNS[name], *teacher_flags, *labels, *FP16, "--log-interval", "1")
    log = proc.stdout + proc.stderr
    if offline:
        assert "offline KD" in log
    lines = [line for line in proc.stdout.splitlines() if "| train_inner |" in line]
    assert len(lines) == 4 and all("loss_scale=8" in line for line in lines), "four fp16 updates, none skipped"
    terms = {"wd_phase1": ("loss", "kd_loss", "pkd_loss"), "pkd": ("loss", "kd_loss", "pkd_loss"),
             "ptp": ("loss",)}.get(name, ("loss", "kd_loss"))
    for term in terms:
        values = [float(v) for line in lines for v in re.findall(rf"\b{term}=([^,]+),", line)]
        assert len(values) == 4 and all(math.isfinite(v) for v in values), f"{term}: {values}"

    last = os.path.join(tmp_path, "checkpoint_last.pt")
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([last])
    student = models[0].eval()
    assert all(p.dtype == torch.float32 for p in student.parameters()), "loaded in fp32"
    # fairseq's optimizer runs over the trainable parameters of the model, then the criterion's, in order;
    # its fp32 first moments say which got a gradient (the half weights saved may round a small step away)
    state = torch.load(last, weights_only=True)
    names = [n for n, p in student.named_parameters() if p.requires_grad]
    names += [f"criterion.{k}" for k in state["criterion"] or {}]
    moments = [s["exp_avg"] for _, s in sorted(state["last_optimizer_state"]["state"].items())]
    assert len(moments) == len(names)
    checked = {n: m for n, m in zip(names, moments) if n.startswith(TRAINED[name])
               and "k_proj__bias" not in n and "k_proj.bias" not in n}  # a key bias shifts a query's scores alike
    assert checked and all(m.dtype == torch.float32 for m in checked.values())
    missed = [n for n, m in checked.items() if not torch.isfinite(m).all() or m.abs().max() == 0]
    assert not missed, f"no gradient reached {missed}"
    task.load_dataset("valid")
    ds = task.dataset("valid")
    sample = ds.collater([ds[i] for i in range(4)])
    with torch.no_grad():
        out = student(**sample["net_input"])[0]
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    if isinstance(student, WeightDistillationModel):
        with torch.no_grad():
            student.materialize_()
            assert torch.allclose(student.student(**sample["net_input"])[0], out, atol=1e-5)
