"""Checkpoint choice and early stopping by valid BLEU: the pipeline's trainings ask fairseq for it, and
fairseq's checkpoint_best.pt and --patience then follow BLEU; the stopping table reports it."""
import os

import torch
from fairseq import options

from fairseq_wd.cli.pipeline import get_parser
from fairseq_wd.pipeline import curves
from fairseq_wd.pipeline.experiment import Pipeline

from utils import STUDENT


def training_commands(tmp_path, monkeypatch, *argv):
    os.makedirs(tmp_path)
    pipe = Pipeline(get_parser().parse_args(["--work-dir", str(tmp_path), *argv]))
    commands = []
    monkeypatch.setattr(pipe, "sh", lambda *cmd, log=None, env=None: commands.append([str(c) for c in cmd]))
    pipe.students("teacher.pt", "kd-bin")
    return [options.parse_args_and_arch(options.get_training_parser(), c[1:]) for c in commands
            if c[0] == "fairseq-train"]


def test_every_bilingual_training_selects_by_valid_bleu_unless_asked_for_loss(tmp_path, monkeypatch):
    by_bleu = training_commands(tmp_path / "bleu", monkeypatch, "--budget", "cpu", "--methods", "all")
    assert len(by_bleu) == 12  # WD's two phases and every Pea-KD part included
    for a in by_bleu:
        assert (a.eval_bleu, a.best_checkpoint_metric, a.maximize_best_checkpoint_metric, a.patience) == (
            True, "bleu", True, 4), a.save_dir
    by_loss = training_commands(tmp_path / "loss", monkeypatch, "--select-by", "loss")
    assert {(a.eval_bleu, a.best_checkpoint_metric, a.maximize_best_checkpoint_metric) for a in by_loss} == {
        (True, "loss", False)}


def test_checkpoint_best_and_patience_follow_valid_bleu(data_bin, tmp_path, monkeypatch):
    """A real training of the pipeline (the `cpu` recipe's patience, scaled to validate every update):
    checkpoint_best.pt holds the highest valid BLEU of the log, and the stopping table says so; the
    learning curve then leaves the ending to that table."""
    args = get_parser().parse_args(["--work-dir", str(tmp_path), "--data-bin", str(data_bin), "--budget", "cpu",
                                    "--update-scale", "0.004", "--post-process", "none", "--patience", "2",
                                    "--train-args", "--max-tokens 1000 --lr 0.003 --num-workers 0"])
    pipe = Pipeline(args)
    best = pipe.train("student", 5000, *STUDENT, "--criterion", "label_smoothed_cross_entropy", row="student")
    points = curves.read_validations(os.path.join(tmp_path, "student", "train.log"))
    top = curves.best(points, "bleu")
    assert len(points) >= 3 and top is not None
    state = torch.load(best, weights_only=False)
    assert state["extra_state"]["best"] == top["bleu"]  # fairseq's best is a BLEU, the highest one
    assert state["optimizer_history"][-1]["num_updates"] == top["update"]
    table = pipe.stopping_table()
    assert "without a better valid bleu" in table and "checkpoint_best.pt: the best valid bleu" in table
    assert f"| student | {top['bleu']:.2f} ({top['update']}) |" in table
    monkeypatch.setattr(pipe, "valid_bleu", lambda checkpoint: 30.0)
    curve = pipe.learning_curves(best).split("\n\n")[1].splitlines()
    assert curve[0] == "| model | updates | valid BLEU at the end | best valid BLEU (update) |"
    assert curve[2] == (f"| student | {points[-1]['update']} | {points[-1]['bleu']:.2f} | "
                        f"{top['bleu']:.2f} ({top['update']}) |")
