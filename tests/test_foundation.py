"""The plugin installs, imports, fixes fairseq-fixed's traps and registers the paper's architectures."""

import pytest
import torch

from utils import TINY_DIMS, TRAIN_FLAGS, USER_DIR, run, train

import fairseq_wd  # noqa: F401  (compat fixes + registration)
from fairseq import options
from fairseq.models.transformer import TransformerModel
from fairseq_wd.students.layer_copy import SizedDictionaries


def hypotheses(output):
    return sorted(int(line.split("\t")[0][2:]) for line in output.splitlines() if line.startswith("H-"))


@pytest.mark.parametrize("batching", [["--batch-size", "5"], ["--max-tokens", "60"], ["--batch-size", "64"]])
def test_generate_translates_every_sentence(data_bin, teacher, batching):
    out = run("fairseq-generate", data_bin, "--user-dir", USER_DIR, "--path", teacher, "--cpu",
              "--gen-subset", "test", "--beam", "2", *batching).stdout
    assert hypotheses(out) == list(range(20)), "fairseq-generate dropped test sentences"


def test_installed_package_dir_works_as_user_dir(data_bin, teacher):
    installed = run("fairseq-wd-user-dir").stdout.strip()
    out = run("fairseq-generate", data_bin, "--user-dir", installed, "--path", teacher, "--cpu",
              "--gen-subset", "valid", "--batch-size", "3").stdout
    assert hypotheses(out) == list(range(20))


def test_checkpoints_load_weights_only(data_bin, teacher, tmp_path):
    """Also a checkpoint whose extra state holds numpy values (--eval-bleu, best-checkpoint)."""
    train(data_bin, tmp_path, "wd_transformer_tiny", *TINY_DIMS, "--eval-bleu",
          "--validate-interval-updates", "2", "--best-checkpoint-metric", "bleu",
          "--maximize-best-checkpoint-metric", updates=4)
    for path in (teacher, tmp_path / "checkpoint_best.pt", tmp_path / "checkpoint_last.pt"):
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert "model" in state and "cfg" in state


def build(arch, *extra, vocab=(100, 120)):
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(
        parser, ["unused", "--task", "translation", "--arch", arch, "--user-dir", USER_DIR, *extra]
    )
    return TransformerModel.build_model(args, SizedDictionaries(*vocab)), args


def expected_parameters(v_src, v_tgt, enc, dec, d_e, f_e, d_d, f_d, prenorm):
    """Counted from the dimensions alone (sinusoidal positions, untied output projection)."""
    linear = lambda i, o: i * o + o  # noqa: E731
    ln = lambda d: 2 * d  # noqa: E731
    enc_layer = 4 * linear(d_e, d_e) + linear(d_e, f_e) + linear(f_e, d_e) + 2 * ln(d_e)
    cross = 2 * linear(d_d, d_d) + 2 * linear(d_e, d_d)
    dec_layer = 4 * linear(d_d, d_d) + cross + linear(d_d, f_d) + linear(f_d, d_d) + 3 * ln(d_d)
    total = v_src * d_e + enc * enc_layer + 2 * v_tgt * d_d + dec * dec_layer
    return total + (ln(d_e) + ln(d_d) if prenorm else 0)


@pytest.mark.parametrize("arch,dims", [
    ("wd_transformer_base", (6, 6, 512, 2048, 512, 2048, False)),
    ("wd_transformer_big", (6, 6, 1024, 4096, 1024, 4096, False)),
    ("wd_transformer_deep", (48, 6, 512, 2048, 512, 2048, True)),
    ("wd_transformer_tiny", (6, 1, 512, 2048, 256, 1024, False)),
    ("wd_transformer_small", (6, 2, 512, 2048, 512, 2048, False)),
])
def test_architecture_parameter_count(arch, dims):
    model, _ = build(arch)
    assert sum(p.numel() for p in model.parameters()) == expected_parameters(100, 120, *dims)


def test_tiny_follows_a_big_encoder_and_command_line_wins():
    _, args = build("wd_transformer_tiny", "--encoder-embed-dim", "1024", "--encoder-ffn-embed-dim", "4096")
    assert (args.decoder_embed_dim, args.decoder_ffn_embed_dim, args.decoder_layers) == (512, 2048, 1)
    _, args = build("wd_transformer_tiny", "--decoder-embed-dim", "128", "--decoder-layers", "3")
    assert (args.decoder_embed_dim, args.decoder_layers, args.encoder_embed_dim) == (128, 3, 512)
    _, args = build("wd_transformer_big")
    assert (args.dropout, args.encoder_attention_heads) == (0.3, 16)


def test_tiny_rejects_shared_embeddings():
    with pytest.raises(ValueError, match="share-all-embeddings"):
        build("wd_transformer_tiny", "--share-all-embeddings", vocab=(100, 100))


def test_fairseq_commands_show_no_known_noise(data_bin, tmp_path):
    """fairseq-train with the plugin prints fairseq's progress, not hydra's and torch's deprecation
    warnings (compat.NOISE) nor DEBUG log lines; FAIRSEQ_WD_VERBOSE=1 shows them again."""
    args = [data_bin, "--user-dir", USER_DIR, "--arch", "wd_transformer_tiny", *TINY_DIMS, "--max-update", "2",
            "--criterion", "label_smoothed_cross_entropy", *TRAIN_FLAGS]
    verbose = run("fairseq-train", *args, "--save-dir", tmp_path / "verbose", env={"FAIRSEQ_WD_VERBOSE": "1"})
    assert "version_base parameter is not specified" in verbose.stderr, "the noise this test looks for exists"
    quiet = run("fairseq-train", *args, "--save-dir", tmp_path / "quiet", fresh=True)
    shown = quiet.stdout + quiet.stderr
    assert "num_updates 2" in shown and "Warning" not in shown and "DEBUG" not in shown, shown[-3000:]
