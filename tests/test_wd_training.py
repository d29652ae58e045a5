"""WD phase 1 under fairseq-train, export, phase 2, resume and distributed runs."""
import os
import re

import pytest
import torch

from utils import TRAIN_FLAGS, USER_DIR, run, torchrun_every_rank, valid_metric

import fairseq_wd  # noqa: F401
from fairseq import checkpoint_utils
from fairseq.data import data_utils
from fairseq_wd.export.student import load_phase1

STUDENT = ["--arch", "wd_transformer_tiny", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
           "--encoder-layers", "2", "--encoder-attention-heads", "4", "--decoder-attention-heads", "4"]


def phase1(data, save_dir, teacher, *extra, updates=12, check=True):
    return run("fairseq-train", data, "--user-dir", USER_DIR, "--task", "weight_distillation",
               "--teacher-path", teacher, "--criterion", "weight_distillation", "--save-dir", save_dir,
               "--max-update", updates, *STUDENT, *TRAIN_FLAGS, *extra, check=check)


def train_losses_after(log, update):
    return [(int(u), float(loss)) for loss, u in re.findall(r"train_inner .*? loss=([\d.]+),.*?num_updates=(\d+)", log)
            if int(u) > update]


@pytest.fixture(scope="module")
def phase1_checkpoint(data_bin, teacher, tmp_path_factory):
    save = tmp_path_factory.mktemp("phase1")
    log = phase1(data_bin, save, teacher, "--validate-interval-updates", "4", "--validate-interval", "1000",
                 updates=24).stdout
    return save / "checkpoint_last.pt", log


def test_phase1_lowers_validation_loss(phase1_checkpoint):
    _, log = phase1_checkpoint
    losses = [float(v) for v in re.findall(r"valid on 'valid' subset \| loss ([\d.]+)", log)]
    assert len(losses) >= 2 and losses[-1] < 0.9 * losses[0], losses


def test_export_equals_phase1_and_runs_without_user_dir(data_bin, phase1_checkpoint, tmp_path):
    ckpt, _ = phase1_checkpoint
    out = tmp_path / "student.pt"
    full = run("fairseq-wd-export", ckpt, "--output", out, disk_full_at=50_000, check=False)
    assert full.returncode != 0 and f"cannot write {out}: File too large" in full.stderr
    assert os.listdir(tmp_path) == [], "nothing half-written that a rerun would take as done"
    run("fairseq-wd-export", ckpt, "--output", out)
    state = torch.load(out, weights_only=True)
    assert state["cfg"]["model"]["arch"] == "transformer" and state["cfg"]["model"]["decoder_embed_dim"] == 16

    wd = load_phase1(str(ckpt))
    exported, _ = checkpoint_utils.load_model_ensemble([str(out)])
    exported = exported[0].eval()
    ds = data_utils.load_indexed_dataset(str(data_bin / "valid.src-tgt.src"), None)
    src = data_utils.collate_tokens([ds[i] for i in range(6)], pad_idx=1, left_pad=True)
    lengths = src.ne(1).sum(1)
    prev = torch.randint(4, 20, (6, 7))
    with torch.no_grad():
        a, b = wd(src, lengths, prev)[0], exported(src, lengths, prev)[0]
    assert (a - b).abs().max().item() < 1e-4

    env = {"PYTHONPATH": ""}
    gen = run("fairseq-generate", data_bin, "--path", out, "--cpu", "--gen-subset", "test", "--beam", "2",
              "--batch-size", "5", "--required-batch-size-multiple", "1", env=env).stdout
    assert len(re.findall(r"^H-", gen, re.M)) == 20


def test_phase2_finetunes_exported_student(data_bin, teacher, phase1_checkpoint, tmp_path):
    ckpt, _ = phase1_checkpoint
    run("fairseq-wd-export", ckpt, "--output", tmp_path / "student.pt")
    log = run("fairseq-train", data_bin, "--user-dir", USER_DIR, "--task", "distillation", "--finetune-from-model",
              tmp_path / "student.pt", "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
              "--save-dir", tmp_path / "phase2", "--max-update", "4", *STUDENT, *TRAIN_FLAGS)
    assert "Loaded checkpoint" in log.stdout + log.stderr
    exported = torch.load(tmp_path / "student.pt", weights_only=True)["model"]
    tuned = torch.load(tmp_path / "phase2" / "checkpoint_last.pt", weights_only=True)["model"]
    moved = max((tuned[k].float() - exported[k].float()).abs().max().item() for k in exported if k in tuned)
    assert 0 < moved < 0.05, f"4 updates start from the exported weights and change them (largest change {moved})"


def test_resume_continues_like_an_uninterrupted_run(data_bin, teacher, tmp_path):
    flags = ["--log-interval", "1", "--disable-validation"]
    whole = phase1(data_bin, tmp_path / "whole", teacher, *flags, updates=10).stdout
    phase1(data_bin, tmp_path / "cut", teacher, *flags, "--max-epoch", "1", updates=10)  # killed after epoch 1
    resumed = phase1(data_bin, tmp_path / "cut", teacher, *flags, updates=10).stdout
    cut = int(re.search(r"Loaded checkpoint .* @ (\d+) updates", resumed).group(1))
    expected = train_losses_after(whole, cut)
    assert 0 < cut < 10 and train_losses_after(resumed, cut) == expected, "the same batches, the same losses"


def test_resume_with_another_teacher_is_an_error(data_bin, teacher, phase1_checkpoint, tmp_path):
    ckpt, _ = phase1_checkpoint
    other = tmp_path / "other_teacher.pt"
    state = torch.load(teacher, weights_only=True)
    state["model"]["decoder.layers.0.fc1.bias"] += 1.0
    torch.save(state, other)
    os.makedirs(tmp_path / "save")
    os.link(ckpt, tmp_path / "save" / "checkpoint_last.pt")
    proc = phase1(data_bin, tmp_path / "save", other, updates=30, check=False)
    assert proc.returncode != 0 and "another teacher" in proc.stderr


def test_phase1_options_kd_term_separate_transforms_identity_init(data_bin, teacher, tmp_path):
    log = phase1(data_bin, tmp_path, teacher, "--kd-alpha", "0.5", "--wd-separate-transforms",
                 "--wd-init", "truncated-identity", updates=2).stdout
    assert "kd_loss" in log and "teacher_nll_loss" in log
    keys = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)["model"]
    assert "generator.transforms.decoder__layers__0__fc1__weight.w_in" in keys  # one set per group
    assert not any(k.startswith("generator.transforms.decoder__layers__fc1") for k in keys)


def test_two_process_gloo_phase1_keeps_the_generator_in_sync(data_bin, teacher, tmp_path):
    """Also when resumed: rank 0 sends its checkpoint to rank 1 (compat.load_broadcast_checkpoints)."""
    flags = ["--user-dir", USER_DIR, "--task", "weight_distillation", "--teacher-path", teacher, "--criterion",
             "weight_distillation", *STUDENT, *TRAIN_FLAGS]
    torchrun_every_rank(tmp_path, "29581", data_bin, *flags, "--max-update", "2")
    ranks, log = torchrun_every_rank(tmp_path, "29582", data_bin, *flags, "--max-update", "4")
    assert "Loaded checkpoint" in log and "done training" in log
    generator = [k for k in ranks[0]["model"] if k.startswith("generator.")]
    assert generator
    for k in generator:
        assert torch.equal(ranks[0]["model"][k], ranks[1]["model"][k]), f"{k} differs between ranks"


def test_pre_norm_teacher_final_layer_norms_train_as_copies(data_bin, tmp_path):
    """A pre-norm teacher (the deep one's kind): the student's final LayerNorms start as the teacher's
    and train (the released code); the narrower decoder's is generated."""
    from utils import TINY_DIMS, train
    pre_norm = ["--encoder-normalize-before", "--decoder-normalize-before"]
    teacher = train(data_bin, tmp_path / "teacher", "wd_transformer_base", *TINY_DIMS, *pre_norm, updates=20)
    phase1(data_bin, tmp_path / "phase1", teacher, *pre_norm, updates=10)
    run("fairseq-wd-export", tmp_path / "phase1" / "checkpoint_last.pt", "--output", tmp_path / "student.pt")
    student = torch.load(tmp_path / "student.pt", weights_only=True)["model"]
    teacher_weights = torch.load(teacher, weights_only=True)["model"]
    moved = (student["encoder.layer_norm.weight"] - teacher_weights["encoder.layer_norm.weight"]).abs().max()
    assert 0 < moved < 0.1  # trained from the teacher's values, not tanh-gated (~0.76 of them)
    assert student["decoder.layer_norm.weight"].shape == (16,)


def test_two_process_gloo_phase1_validates_the_generated_weights(data_bin, teacher, tmp_path):
    """Under data-parallel training fairseq passes valid_step its DDP wrapper: --eval-bleu must still decode
    the generated student. With a learning rate too small to move the generator, the 2-process valid BLEU
    equals the single-process one (the wrapped student's own initial weights score near 0)."""
    flags = ["--user-dir", USER_DIR, "--task", "weight_distillation", "--teacher-path", teacher, "--criterion",
             "weight_distillation", "--wd-init", "truncated-identity", "--max-update", "2", *STUDENT, *TRAIN_FLAGS,
             "--lr", "1e-12", "--max-tokens", "500", "--validate-interval-updates", "2", "--eval-bleu",
             "--eval-bleu-args", '{"beam": 2}']
    single = run("fairseq-train", data_bin, *flags, "--save-dir", tmp_path / "one")
    (bleu,) = valid_metric(single.stdout + single.stderr, "bleu")
    _, log = torchrun_every_rank(tmp_path / "two", "29583", data_bin, *flags)
    assert bleu > 0.5 and valid_metric(log, "bleu") == [bleu]
