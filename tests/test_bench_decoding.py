"""fairseq_wd.bench.decoding as the bench uses it: tied weights counted once, unknown reference words escaped
as fairseq's scorer does, the untimed warm-up of both decoders, and the rotating model order."""
import re

import pytest
import sacrebleu
import torch
from utils import TINY_DIMS, run, train

import fairseq_wd  # noqa: F401
from fairseq import checkpoint_utils
from fairseq_wd.bench import decoding, testset
from fairseq_wd.checkpoints import load_state, model_args, save_plain_transformer
from fairseq_wd.export import ct2


def parameters(path):
    models, _ = checkpoint_utils.load_model_ensemble([str(path)])
    return sum(p.numel() for p in models[0].parameters())  # a shared Parameter once


@pytest.fixture(scope="module")
def joined_bin(raw_dir, tmp_path_factory):
    """The toy data with one dictionary for both sides, as --share-all-embeddings needs."""
    data = tmp_path_factory.mktemp("joined")
    run("fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt", "--joined-dictionary",
        "--trainpref", raw_dir / "train", "--validpref", raw_dir / "valid", "--destdir", data, "--workers", "1")
    return data


@pytest.mark.parametrize("sharing", ["--share-decoder-input-output-embed", "--share-all-embeddings"])
def test_tied_embeddings_count_once(joined_bin, tmp_path, sharing):
    """fairseq lists a tied embedding under two (three) names; counted once, from the shared storage of
    the checkpoint fairseq-train wrote and, in a float16 copy that shares nothing, from the model args."""
    checkpoint = train(joined_bin, tmp_path / "model", "wd_transformer_base", *TINY_DIMS, sharing, updates=1)
    params = parameters(checkpoint)
    assert decoding.model_size(checkpoint) == (params, 4 * params)
    state = load_state(checkpoint)
    names = decoding.TIED[sharing[2:].replace("-", "_")]
    assert all(n in state["model"] for n in names), "fairseq's state dict lists every tied name"
    half = str(tmp_path / "half.pt")
    save_plain_transformer(half, state["model"], model_args(state), dtype=torch.float16)
    assert len({load_state(half)["model"][n].data_ptr() for n in names}) == len(names), "the copy shares nothing"
    assert decoding.model_size(half) == (params, 2 * params)


def test_unknown_reference_words_are_escaped(raw_dir, tmp_path):
    """A test target word the dictionary lacks is `<<unk>>`, as fairseq-generate's scorer writes it: a
    hypothesis printing `<unk>` there does not match it."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for lang in ("src", "tgt"):
        (raw / f"train.{lang}").write_text((raw_dir / f"train.{lang}").read_text())
    (raw / "test.src").write_text("ana are mere\n")
    (raw / "test.tgt").write_text("EREM ZORBAX ANA\n")
    run("fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt", "--trainpref", raw / "train",
        "--testpref", raw / "test", "--destdir", tmp_path / "bin", "--workers", "1")
    test = testset.TestSet(str(tmp_path / "bin"), "test", "none")
    assert test.targets == ["EREM <<unk>> ANA"]
    assert sacrebleu.sentence_chrf("EREM <unk> ANA", test.targets).score < 100
    assert sacrebleu.sentence_bleu("EREM <unk> ANA", test.targets).score < 100


def test_rotation_starts_each_round_at_the_next_model():
    assert [decoding.rotation(["a", "b", "c"], r) for r in range(4)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]


class Recorder(decoding.Decoder):
    """Records the order of the calls (a stand-in decoder: what decode_rows does with it is the test)."""
    calls = []

    def translate(self, test):
        self.calls.append(self.path)
        return decoding.Decoded([self.path] * len(test), [1] * len(test), 1.0, 1.0)


def test_rows_rotate_and_only_the_first_seed_is_timed():
    rows = {"teacher": [Recorder("t")], "kd": [Recorder("k1"), Recorder("k2")], "wd": [Recorder("w")]}
    seeds, timed = decoding.decode_rows(rows, [0, 1], repeats=2)
    assert Recorder.calls == ["t", "k1", "w", "k1", "w", "t", "k2"]
    assert [d.hypotheses[0] for d in seeds["kd"]] == ["k1", "k2"] and len(timed["kd"]) == 2


def test_both_decoders_warm_up_off_the_clock(data_bin, teacher, tmp_path):
    """The first batch is decoded once before the clock: the timed first batch then takes less than that
    warm-up (with the warm-up on the clock it would take more), the speed is over the timed batches
    only, and the hypotheses are plain fairseq-generate's."""
    settings = decoding.Settings(6, 1.0, 8, 0, 200, 1, 1, "cpu")
    test = testset.TestSet(str(data_bin), "test", "none")
    batches = len(test.batches(8))
    assert batches == 3
    got = decoding.decoder_for(str(teacher), settings).translate(test)
    assert len(got.batch_seconds) == batches and 0 < got.batch_seconds[0] < got.warmup_s
    assert got.sentences_per_s == pytest.approx(20 / sum(got.batch_seconds), rel=0.01)
    plain = run("fairseq-generate", data_bin, "--path", teacher, "--gen-subset", "test", "--beam", "6",
                "--batch-size", "8", "--cpu", "--user-dir", decoding.USER_DIR).stdout
    best = dict(re.findall(r"^D-(\d+)\t\S+\t(.*)$", plain, re.M))
    assert got.hypotheses == [best[str(i)] for i in range(20)]
    assert got.lengths == [len(h.split()) for h in got.hypotheses], "tokens without </s> (the toy words)"
    folder = tmp_path / "ct2"
    run("fairseq-wd-export", teacher, "--to", "ctranslate2", "--quantization", "none", "--output", folder)
    outputs, seconds, warmup = ct2.translate(str(folder), test.sources, test.batches(8), 6, 1.0, 1)
    assert len(seconds) == batches and warmup > 0 and all(o is not None for o in outputs)


def test_speed_is_the_generators_own_meter_with_the_loader_in_process(data_bin, teacher, monkeypatch):
    """fairseq logs its 'Translated ... sentences/s' line to whichever stream logging was configured on
    first (generate.py asks for stdout); the figures come from the generator's own per-batch meter, so
    they hold with that line on stdout, and fairseq-generate loads its batches in its own process."""
    real, commands = decoding.GenerateProcess.run, []

    def fairseq_logging_to_stdout(argv, env):
        code, stdout, stderr = real(argv, env)
        commands.append(argv)
        logged = [line for line in stderr.splitlines(True) if "Translated " in line]
        assert logged, "fairseq's own speed line"
        rest = "".join(line for line in stderr.splitlines(True) if line not in logged)
        return code, stdout + "".join(logged), rest

    monkeypatch.setattr(decoding.GenerateProcess, "run", fairseq_logging_to_stdout)
    test = testset.TestSet(str(data_bin), "test", "none")
    got = decoding.decoder_for(str(teacher), decoding.Settings(6, 1.0, 8, 0, 200, 1, 1, "cpu")).translate(test)
    assert len(got.batch_seconds) == 3 and got.sentences_per_s == pytest.approx(20 / sum(got.batch_seconds))
    assert got.tokens_per_s == pytest.approx((sum(got.lengths) + 20) / sum(got.batch_seconds)), "with </s>"
    cmd, = commands
    assert [v for k, v in zip(cmd, cmd[1:]) if k == "--num-workers"][-1] == "0"


def test_fairseq_runs_share_one_generate_process(data_bin, teacher, tmp_path):
    """Every fairseq run of a bench goes to one fairseq-generate process: a run there decodes as the first
    did (another task and model in between), a failed run is its error and leaves the process serving,
    and a process that died is started anew."""
    test = testset.TestSet(str(data_bin), "test", "none")
    settings = decoding.Settings(6, 1.0, 8, 0, 200, 1, 1, "cpu")
    half = str(tmp_path / "half.pt")
    state = load_state(teacher)
    save_plain_transformer(half, state["model"], model_args(state), dtype=torch.float16)
    vmap = tmp_path / "vmap.txt"
    vmap.write_text("ana\tANA\n")
    decoding.GenerateProcess.close_all()  # those of tests before in this process
    try:
        first = decoding.decoder_for(str(teacher), settings).translate(test)
        process, = decoding.GenerateProcess.running.values()
        shortlisted = decoding.decoder_for(half, settings, str(vmap)).translate(test)
        assert shortlisted.hypotheses != first.hypotheses, "only ANA and the words always allowed"
        with pytest.raises(decoding.DecodingError, match="fairseq-generate failed on .*missing.pt:(.|\n)*missing.pt"):
            decoding.decoder_for(str(tmp_path / "missing.pt"), settings).translate(test)
        again = decoding.decoder_for(str(teacher), settings).translate(test)
        assert (again.hypotheses, again.lengths) == (first.hypotheses, first.lengths)
        assert list(decoding.GenerateProcess.running.values()) == [process], "one process served every run"
        process.proc.kill()
        process.proc.wait()
        after = decoding.decoder_for(str(teacher), settings).translate(test)
        replacement, = decoding.GenerateProcess.running.values()
        assert after.hypotheses == first.hypotheses and replacement is not process
    finally:
        decoding.GenerateProcess.close_all()
    assert not decoding.GenerateProcess.running and process.proc.poll() is not None
