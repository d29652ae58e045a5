"""KD through the real commands: fairseq-train --task distillation, fairseq-wd-distill-data,
fairseq-wd-init-student, and their errors on bad input."""
import os
import re

import numpy as np
import pytest
import torch

from utils import STUDENT, TRAIN_FLAGS, USER_DIR, kd_train, run, torchrun_every_rank, valid_metric

import fairseq_wd  # noqa: F401
from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion
from fairseq.data import data_utils
from fairseq.models.transformer import TransformerModel
from fairseq import options, tasks
from fairseq.tasks.translation import TranslationTask
from fairseq_wd.cli import init_student
from fairseq_wd.criterions.logit_kd import LogitKDCriterion

def test_alpha_zero_equals_label_smoothed_cross_entropy(data_bin):
    args = options.parse_args_and_arch(options.get_training_parser(),
                                       [str(data_bin), "--user-dir", USER_DIR, *STUDENT])
    task = tasks.setup_task(args)
    task.load_dataset("valid")
    ds = task.dataset("valid")
    sample = ds.collater([ds[i] for i in range(8)])
    model = TransformerModel.build_model(args, task)
    model.train()
    torch.manual_seed(0)
    kd_loss, _, kd_log = LogitKDCriterion(task, False, 0.1, 0.0, 2.0, 0)(model, sample)
    torch.manual_seed(0)
    ls_loss, _, _ = LabelSmoothedCrossEntropyCriterion(task, False, 0.1)(model, sample)
    assert torch.equal(kd_loss, ls_loss)
    assert "kd_loss" not in kd_log


def test_logit_kd_lowers_kl_to_teacher(data_bin, teacher, tmp_path):
    log = kd_train(data_bin, tmp_path, "--teacher-path", teacher, "--criterion", "logit_kd",
                   "--kd-alpha", "0.9", "--kd-temperature", "2", "--validate-interval-updates", "1",
                   "--validate-interval", "1000", updates=40).stdout
    kl = valid_metric(log, "kd_loss")
    assert len(kl) >= 2 and kl[-1] < 0.8 * kl[0], kl
    assert valid_metric(log, "teacher_nll_loss"), "teacher nll is logged"
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)
    assert not any(k.startswith("teacher") for k in state["model"]), "teacher must not be saved"


def test_pkd_trains_with_projection_for_narrow_decoder(data_bin, teacher, tmp_path):
    log = kd_train(data_bin, tmp_path, "--teacher-path", teacher, "--criterion", "pkd", "--kd-topk", "5",
                   "--decoder-embed-dim", "16", "--decoder-ffn-embed-dim", "32", updates=3).stdout
    assert valid_metric(log, "pkd_loss")
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)
    assert state["criterion"]["projections.decoder.weight"].shape == (32, 16)


def read_split(folder, split, lang):
    ds = data_utils.load_indexed_dataset(os.path.join(folder, f"{split}.src-tgt.{lang}"), None)
    return [ds[i].tolist() for i in range(len(ds))]


def test_distill_data_order_shards_resume_and_topk(data_bin, teacher, tmp_path):
    common = [data_bin, "--path", teacher, "--gen-subset", "test", "--beam", "2", "--batch-size", "4",
              "--cpu", "--chunk-size", "6"]
    run("fairseq-wd-distill-data", *common, "--dest", tmp_path / "whole", "--save-topk", "3")
    for shard in ("0", "1"):
        run("fairseq-wd-distill-data", *common, "--dest", tmp_path / "sharded", "--save-topk", "3",
            "--num-shards", "2", "--shard-id", shard)
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    assert read_split(whole, "test", "src") == read_split(data_bin, "test", "src")  # same order
    hyps = read_split(whole, "test", "tgt")
    assert len(hyps) == 20 and all(h[-1] == 2 for h in hyps)  # eos-terminated
    assert hyps == read_split(sharded, "test", "tgt")
    for name in ("test.src-tgt.topk_idx.npy", "test.src-tgt.topk_lprob.npy"):
        assert (whole / name).read_bytes() == (sharded / name).read_bytes()

    out = run("fairseq-generate", data_bin, "--user-dir", USER_DIR, "--path", teacher, "--cpu",
              "--gen-subset", "test", "--beam", "2", "--batch-size", "4").stdout
    generated = {int(m.group(1)): m.group(2) for m in re.finditer(r"^H-(\d+)\t\S+\t(.*)$", out, re.M)}
    d = TranslationTask.load_dictionary(str(data_bin / "dict.tgt.txt"))
    agree = sum(d.string(torch.tensor(h[:-1])) == generated[i] for i, h in enumerate(hyps))
    assert agree >= 18, f"only {agree}/20 teacher outputs match fairseq-generate"

    refused = run("fairseq-wd-distill-data", *common, "--dest", data_bin, check=False)
    assert refused.returncode != 0 and "--dest must differ" in refused.stderr

    os.remove(whole / "chunks" / "test.000002.pt")
    proc = run("fairseq-wd-distill-data", *common, "--dest", whole, "--save-topk", "3")
    assert "4 chunks; shard 0/1 has 4, 3 already done" in proc.stdout + proc.stderr
    assert read_split(whole, "test", "tgt") == hyps


def test_offline_topk_trains_without_teacher(data_bin, teacher, tmp_path):
    distill = ["fairseq-wd-distill-data", data_bin, "--path", teacher, "--gen-subset", "train", "--beam", "1",
               "--batch-size", "64", "--cpu", "--dest", tmp_path / "kd", "--save-topk", "4", "--chunk-size", "300"]
    full = run(*distill, disk_full_at=20_000, check=False)
    assert full.returncode != 0 and "train.000000.pt: File too large. Free disk space" in full.stderr
    assert os.listdir(tmp_path / "kd" / "chunks") == [], "no half-written chunk that a rerun would take as done"
    run(*distill)  # the disk has room again
    # greedy decoding (--beam 1) outputs the argmax: the stored top-1 of every position is its output token
    outputs = np.concatenate(read_split(tmp_path / "kd", "train", "tgt"))
    top1 = np.load(tmp_path / "kd" / "train.src-tgt.topk_idx.npy")[:, 0]
    assert len(top1) == len(outputs) and (top1 == outputs).all(), f"{(top1 != outputs).sum()} positions differ"
    proc = kd_train(tmp_path / "kd", tmp_path / "ckpt", "--criterion", "logit_kd", updates=2)
    assert "offline KD" in proc.stdout + proc.stderr and "kd_loss" in proc.stdout
    # Stored top-K carries the teacher's logits, not its hidden states: pkd must still run the teacher
    # for its hidden-state term in training (validation has no stored top-K, so it would hide a drop).
    proc = kd_train(tmp_path / "kd", tmp_path / "pkd", "--criterion", "pkd", "--teacher-path", teacher,
                    "--log-interval", "1", updates=2)
    train_lines = [line for line in proc.stdout.splitlines() if "| train_inner |" in line]
    assert train_lines and all("pkd_loss=" in line for line in train_lines), train_lines


def test_extra_train_data_is_concatenated(data_bin, teacher, tmp_path):
    run("fairseq-wd-distill-data", data_bin, "--path", teacher, "--gen-subset", "train", "--beam", "1",
        "--batch-size", "64", "--cpu", "--dest", tmp_path / "kd")
    # One thread and a stop mid-epoch: without compat.stop_data_threads_at_exit the data-prefetch
    # thread is still collating at interpreter exit and fairseq-train aborts (-6) after training.
    proc = kd_train(data_bin, tmp_path / "ckpt", "--extra-train-data", tmp_path / "kd",
                    "--criterion", "label_smoothed_cross_entropy", updates=1, env={"OMP_NUM_THREADS": "1"})
    assert "train = 600 original + 600 extra pairs" in proc.stdout + proc.stderr


def test_init_student_copies_teacher_layers(teacher, tmp_path):
    out = tmp_path / "student.pt"
    run("fairseq-wd-init-student", "--teacher-path", teacher, "--arch", "wd_transformer_small",
        "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-layer-map", "1", "--output", out)
    s = torch.load(out, weights_only=True)
    t = torch.load(teacher, weights_only=True)["model"]
    assert s["cfg"]["model"]["arch"] == "transformer"
    assert torch.equal(s["model"]["encoder.layers.0.fc1.weight"], t["encoder.layers.1.fc1.weight"])
    assert torch.equal(s["model"]["decoder.layers.0.fc2.weight"], t["decoder.layers.0.fc2.weight"])
    assert torch.equal(s["model"]["decoder.output_projection.weight"], t["decoder.output_projection.weight"])
    for argv, message in ((["--arch", "wd_transformer_small", "--output", out], "exists"),
                          (["--arch", "wd_transformer_tiny", "--encoder-layers", "2", "--output", tmp_path / "tiny.pt"],
                           "Weight Distillation")):
        with pytest.raises(SystemExit, match=message):  # the command's own refusal, in this process
            init_student.main(["--teacher-path", str(teacher), *map(str, argv)])


def test_two_process_gloo_pkd_keeps_the_projection_in_sync(data_bin, teacher, tmp_path):
    """PKD's width projection lives in the criterion: fairseq wraps a criterion with parameters in DDP,
    so both ranks must end with the same projection (and model), changed by training."""
    ranks, log = torchrun_every_rank(tmp_path, "29571", data_bin, "--user-dir", USER_DIR, "--task", "distillation",
                                "--teacher-path", teacher, "--criterion", "pkd", "--pkd-beta", "10",
                                "--max-update", "3", *STUDENT, *TRAIN_FLAGS)
    assert "projections.decoder.weight" in ranks[0]["criterion"]
    assert float(re.findall(r"pkd_loss[=| ]+([\d.]+)", log)[-1]) > 0  # the projection gets gradients
    for part in ("criterion", "model"):
        for k, v in ranks[0][part].items():
            assert torch.equal(v, ranks[1][part][k]), f"{part} {k} differs between ranks"


@pytest.mark.parametrize("extra,message", [
    (["--teacher-path", "/nonexistent/teacher.pt", "--criterion", "logit_kd"], "teacher checkpoint not found"),
    (["--teacher-path", "CORRUPT", "--criterion", "logit_kd"], "cannot be read as a fairseq checkpoint"),
    (["--teacher-path", "TEACHER", "--criterion", "logit_kd", "--kd-temperature", "0"], "--kd-temperature must be > 0"),
    (["--teacher-path", "TEACHER", "--criterion", "logit_kd", "--kd-alpha", "1.5"], "--kd-alpha must be in [0, 1]"),
    (["--teacher-path", "TEACHER", "--criterion", "pkd", "--pkd-decoder-map", "7"], "teacher layer(s) [7]"),
])
def test_bad_input_fails_before_training(data_bin, teacher, tmp_path, extra, message):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(open(teacher, "rb").read()[:5000])
    extra = [{"CORRUPT": corrupt, "TEACHER": teacher}.get(x, x) for x in extra]
    proc = kd_train(data_bin, tmp_path / "ckpt", *extra, check=False)
    assert proc.returncode != 0 and message in proc.stderr
    assert "train_inner" not in proc.stdout


def test_dictionary_mismatch_names_both_sizes(raw_dir, teacher, tmp_path):
    run("fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt", "--trainpref", raw_dir / "train",
        "--validpref", raw_dir / "valid", "--destdir", tmp_path / "bin", "--workers", "1", "--nwordstgt", "10")
    proc = kd_train(tmp_path / "bin", tmp_path / "ckpt", "--teacher-path", teacher, "--criterion", "logit_kd",
                    check=False)
    assert proc.returncode != 0
    sizes = re.search(r"target dictionary of (\d+) entries, but this data-bin's target dictionary has (\d+)", proc.stderr)
    assert sizes and sizes.group(1) != sizes.group(2), proc.stderr[-2000:]


def test_same_size_dictionary_with_a_swapped_symbol_is_refused(raw_dir, data_bin, teacher, tmp_path):
    """Sizes cannot tell a dictionary with two entries swapped from the teacher's; given the teacher's
    dictionaries (--teacher-dict), training and distill-data name the first entry that differs."""
    lines = (data_bin / "dict.tgt.txt").read_text().splitlines(keepends=True)
    lines[0], lines[1] = lines[1], lines[0]
    (tmp_path / "dict.tgt.txt").write_text("".join(lines))
    run("fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt", "--trainpref", raw_dir / "train",
        "--validpref", raw_dir / "valid", "--destdir", tmp_path / "bin", "--workers", "1",
        "--srcdict", data_bin / "dict.src.txt", "--tgtdict", tmp_path / "dict.tgt.txt")
    ours, theirs = lines[0].split()[0], lines[1].split()[0]  # entry 4 (after the 4 special symbols)
    message = f"entry 4 is {ours!r} in the data but {theirs!r} for the teacher"
    proc = kd_train(tmp_path / "bin", tmp_path / "ckpt", "--teacher-path", teacher, "--teacher-dict", data_bin,
                    "--criterion", "logit_kd", check=False)
    assert proc.returncode != 0 and message in proc.stderr and "--tgtdict" in proc.stderr, proc.stderr[-2000:]
    assert "train_inner" not in proc.stdout
    proc = run("fairseq-wd-distill-data", tmp_path / "bin", "--path", teacher, "--teacher-dict", data_bin,
               "--gen-subset", "valid", "--cpu", "--dest", tmp_path / "kd", check=False)
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
