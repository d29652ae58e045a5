"""Multilingual teachers (translation_multi_simple_epoch, as NLLB / M2M-100): KD, WD, teacher output and
the exported student on two toy pairs, src->tgt1 (UPPER-CASE reversed words) and src->tgt2 (Title-Case
words in order), one joint dictionary, a teacher with --share-all-embeddings."""
import json
import os
import random
import re
import shlex

import pytest
import torch

from utils import TINY_DIMS, TRAIN_FLAGS, USER_DIR, run, toy_pair

import fairseq_wd  # noqa: F401
from fairseq import options, tasks
from fairseq.data import Dictionary, data_utils
from fairseq_wd.checkpoints import CheckpointError
from fairseq_wd.cli import distill_data, export
from fairseq_wd.criterions.logit_kd import LogitKDCriterion
from fairseq_wd.criterions.pkd import PKDCriterion
from fairseq_wd.pipeline.experiment import METHODS

PAIRS = ("tgt1", "tgt2")
TARGETS = {"tgt1": lambda src, tgt: tgt, "tgt2": lambda src, tgt: " ".join(w.title() for w in src.split())}
IN_SCRIPT = {"tgt1": str.isupper, "tgt2": str.istitle}  # every word of a right-language hypothesis
STUDENT = ["--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--encoder-layers", "2",
           "--encoder-attention-heads", "4", "--decoder-attention-heads", "4"]


def write_pairs(raw, splits):
    """The two toy pairs' raw text, a file per split and side ((split, sentences, seed) each), and all.src /
    all.tgt: both pairs' train sides, for one joint dictionary."""
    for split, n, seed in splits:
        rng = random.Random(seed)
        sentences = [toy_pair(rng) for _ in range(n)]
        for t in PAIRS:
            (raw / f"{split}.src-{t}.src").write_text("".join(s + "\n" for s, _ in sentences))
            (raw / f"{split}.src-{t}.{t}").write_text("".join(TARGETS[t](s, g) + "\n" for s, g in sentences))
    (raw / "all.src").write_text((raw / "train.src-tgt1.src").read_text() * 2)
    (raw / "all.tgt").write_text((raw / "train.src-tgt1.tgt1").read_text() + (raw / "train.src-tgt2.tgt2").read_text())


@pytest.fixture(scope="module")
def ml(tmp_path_factory):
    """(data-bin, language options, the teacher): one joint dictionary, two pairs, a 2-2 d32 teacher with
    shared embeddings trained with fairseq's own translation_multi_simple_epoch."""
    root = tmp_path_factory.mktemp("multilingual")
    raw, joint, data = root / "raw", root / "joint", root / "data-bin"
    raw.mkdir()
    write_pairs(raw, (("train", 300, 1), ("valid", 16, 2), ("test", 16, 3)))
    run("fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt", "--trainpref", raw / "all",
        "--joined-dictionary", "--dict-only", "--destdir", joint, "--workers", "1")
    for t in PAIRS:
        run("fairseq-preprocess", "--source-lang", "src", "--target-lang", t, "--destdir", data, "--workers", "1",
            *(x for split in ("train", "valid", "test") for x in (f"--{split}pref", raw / f"{split}.src-{t}")),
            "--srcdict", joint / "dict.src.txt", "--tgtdict", joint / "dict.src.txt")
    (root / "langs.txt").write_text("src\ntgt1\ntgt2\n")
    langs = ["--lang-pairs", "src-tgt1,src-tgt2", "--encoder-langtok", "src", "--decoder-langtok",
             "--lang-dict", root / "langs.txt", "--sampling-method", "temperature", "--sampling-temperature", "1.5"]
    run("fairseq-train", data, "--task", "translation_multi_simple_epoch", *langs, "--user-dir", USER_DIR,
        "--arch", "wd_transformer_base", *TINY_DIMS, "--share-all-embeddings", "--save-dir", root / "teacher",
        "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--max-update", 160,
        "--disable-validation", *TRAIN_FLAGS)
    return data, langs, root / "teacher" / "checkpoint_last.pt", joint / "dict.src.txt"


def train(ml, task, save_dir, *extra, updates=3):
    data, langs, teacher, _ = ml
    return run("fairseq-train", data, "--user-dir", USER_DIR, "--task", task, *langs, "--teacher-path", teacher,
               "--save-dir", save_dir, "--max-update", updates, *STUDENT, *TRAIN_FLAGS, *extra).stdout


def setup(ml, *extra, task="distillation_multi_simple_epoch"):
    data, langs, teacher, _ = ml
    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(data), "--user-dir", USER_DIR, "--task", task, "--teacher-path", str(teacher), "--arch",
        "wd_transformer_tiny", *STUDENT, *map(str, langs), *map(str, extra)])
    return tasks.setup_task(args), args


def hypotheses(ml, model, target, *extra):
    data, langs, _, _ = ml
    out = run("fairseq-generate", data, "--task", "translation_multi_simple_epoch", *langs, "-s", "src", "-t",
              target, "--path", model, "--cpu", "--gen-subset", "test", "--beam", "2", "--batch-size", "16",
              *extra, env={"PYTHONPATH": ""}).stdout
    return re.findall(r"^H-\d+\t\S+\t(.*)$", out, re.M)


def test_batch_holds_language_tokens_and_the_teacher_reads_them(ml):
    task, args = setup(ml)
    student = task.build_model(args)  # checks the teacher
    d = task.source_dictionary
    task.load_dataset("valid")
    ds = task.dataset("valid")  # src-tgt1's 16 sentences, then src-tgt2's
    batch = ds.collater([ds[i] for i in range(16)])
    src, prev, target = batch["net_input"]["src_tokens"], batch["net_input"]["prev_output_tokens"], batch["target"]
    first = src.gather(1, src.ne(d.pad()).long().argmax(1, keepdim=True))  # left-padded: first real token
    assert (first == d.index("__src__")).all() and (target[:, 0] == d.index("__tgt1__")).all()
    assert (prev[:, 1] == d.index("__tgt1__")).all()

    def teacher_nll(net_input):
        lprobs = torch.log_softmax(task.teacher_output(student, net_input)[0].float(), -1)
        mask = target.ne(d.pad())
        mask[:, 0] = False  # the language token itself
        return -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)[mask].mean().item()

    right = teacher_nll(batch["net_input"])
    wrong = dict(batch["net_input"], prev_output_tokens=prev.masked_fill(prev == d.index("__tgt1__"),
                                                                         d.index("__tgt2__")))
    assert teacher_nll(wrong) > right + 1.0, "the teacher translates by the language token it is given"

    student.train()  # the criterions unchanged on this batch: a training step of each
    for criterion in (LogitKDCriterion(task, False, 0.1, 0.5, 1.0, 0),
                      PKDCriterion(task, False, 0.1, 0.5, 1.0, 0, 0.5, "skip", "skip")):
        student.zero_grad()
        loss, _, log = criterion(student, batch)
        loss.backward()
        assert log["kd_loss"] > 0 and log["teacher_nll_loss"] / log["ntokens"] < 3.0
        assert student.decoder.embed_tokens.weight.grad.abs().sum() > 0
    assert log["pkd_loss"] > 0 and criterion.projections["decoder"].weight.grad is not None


def test_teacher_checks_name_the_fix(ml, tmp_path):
    _, _, _, joint_dict = ml
    for extra, message in ((["--langs", "tgt1,src,tgt2", "--lang-dict", ""], "numbers its language tokens"),
                           (["--encoder-langtok", "tgt"], "--encoder-langtok src --decoder-langtok, this run with --encoder-langtok tgt")):
        task, _ = setup(ml, *extra)
        with pytest.raises(CheckpointError, match=message):
            task.teacher
    symbols = joint_dict.read_text().splitlines()
    symbols[3], symbols[4] = symbols[4], symbols[3]
    (tmp_path / "dict.txt").write_text("\n".join(symbols) + "\n")
    task, _ = setup(ml, "--teacher-dict", tmp_path / "dict.txt")
    with pytest.raises(CheckpointError, match="entry 7 is"):
        task.teacher
    task, _ = setup(ml, "--teacher-dict", joint_dict)
    assert task.teacher.path  # its own dictionary + fairseq's language tokens: every symbol the data's


def test_pkd_trains_under_fairseq_train(ml, tmp_path):
    log = train(ml, "distillation_multi_simple_epoch", tmp_path, "--arch", "wd_transformer_tiny",
                "--criterion", "pkd", "--kd-alpha", "0.5", updates=2)
    nll = [float(v) for v in re.findall(r"valid on 'valid' subset .*?\| teacher_nll_loss ([\d.]+)", log)]
    assert nll and nll[-1] < 4.0 and re.search(r"valid on .*\| pkd_loss [\d.]+", log)


def test_small_student_shares_embeddings_and_translates_into_each_target_language(ml, tmp_path):
    log = train(ml, "weight_distillation_multi_simple_epoch", tmp_path, "--arch", "wd_transformer_small",
                "--share-all-embeddings", "--criterion", "weight_distillation", updates=6)
    plan = [line.split()[0] for line in log.splitlines() if " <- " in line]
    assert [k for k in plan if "embed_tokens" in k or "output_projection" in k] == ["encoder.embed_tokens.weight"]
    export.main([str(tmp_path / "checkpoint_last.pt"), "--output", str(tmp_path / "student.pt")])
    state = torch.load(tmp_path / "student.pt", weights_only=True)
    model = state["model"]
    for key in ("decoder.embed_tokens.weight", "decoder.output_projection.weight"):
        assert torch.equal(model[key], model["encoder.embed_tokens.weight"]), "generated once, still tied"
    assert state["cfg"]["model"]["share_all_embeddings"]
    assert state["cfg"]["task"]["_name"] == "translation_multi_simple_epoch"
    assert "teacher_path" not in state["cfg"]["task"] and "teacher_path" not in state["cfg"]["model"]
    for target in PAIRS:  # vanilla fairseq, no --user-dir: the target language token picks the language
        words = [w for h in hypotheses(ml, tmp_path / "student.pt", target) for w in h.split()]
        assert len(words) > 16 and all(map(IN_SCRIPT[target], words)), (target, words[:20])


def test_distill_data_every_pair_then_tiny_wd_on_original_plus_teacher_output(ml, tmp_path):
    data, langs, teacher, _ = ml
    kd = tmp_path / "kd-bin"
    distill_data.main(list(map(str, [data, "--user-dir", USER_DIR, "--task", "translation_multi_simple_epoch",
                                     *langs, "--path", teacher, "--dest", kd, "--gen-subset", "train", "--beam", "2",
                                     "--batch-size", "64", "--cpu"])))
    joint = Dictionary.load(str(data / "dict.src.txt"))
    langtoks = {joint.index(f"__{lang}__") for lang in ("src", *PAIRS)}
    for t in PAIRS:
        read = lambda folder, lang: data_utils.load_indexed_dataset(str(folder / f"train.src-{t}.{lang}"), None)
        src, original, hyps = read(kd, "src"), read(data, "src"), read(kd, t)
        assert len(hyps) == 300 and all(torch.equal(src[i], original[i]) for i in range(300)), "sources as on disk"
        assert all(h[-1] == joint.eos() and not langtoks & set(h.tolist()) for h in hyps), "no language token"
        words = [w for i in range(300) for w in joint.string(hyps[i]).split()]
        assert words and all(map(IN_SCRIPT[t], words)), "each pair in its own target language"

    phase1 = tmp_path / "phase1"
    log = train(ml, "weight_distillation_multi_simple_epoch", phase1, "--arch", "wd_transformer_tiny",
                "--share-decoder-input-output-embed", "--criterion", "weight_distillation", "--extra-train-data", kd,
                updates=4)
    assert "'teacher_output:src-tgt2': 300" in log, "the teacher output is one more dataset per pair"
    export.main([str(phase1 / "checkpoint_last.pt"), "--output", str(tmp_path / "student.pt")])
    model = torch.load(tmp_path / "student.pt", weights_only=True)["model"]
    assert model["decoder.embed_tokens.weight"].shape == (len(joint) + 3, 16)  # its own, narrower; 3 languages
    assert torch.equal(model["decoder.embed_tokens.weight"], model["decoder.output_projection.weight"])
    log = run("fairseq-train", data, "--user-dir", USER_DIR, "--task", "distillation_multi_simple_epoch", *langs,
              "--finetune-from-model", tmp_path / "student.pt", "--arch", "wd_transformer_tiny", *STUDENT,
              "--share-decoder-input-output-embed", "--criterion", "label_smoothed_cross_entropy",
              "--save-dir", tmp_path / "phase2", "--max-update", "2", "--extra-train-data", kd, *TRAIN_FLAGS)
    assert "Loaded checkpoint" in log.stdout + log.stderr


def test_extra_train_data_without_every_pair_is_refused(ml, tmp_path):
    data, _, _, _ = ml
    os.makedirs(tmp_path / "kd")
    for name in os.listdir(data):
        if name.startswith("dict.") or name.startswith("train.src-tgt1."):
            os.link(data / name, tmp_path / "kd" / name)
    task, _ = setup(ml, "--extra-train-data", tmp_path / "kd")
    with pytest.raises(ValueError, match="no train data for src-tgt2"):
        task.load_dataset("train")


def test_bench_every_pair_in_fairseq_and_ctranslate2(ml, tmp_path):
    """A multilingual model to CTranslate2 (joint dictionary + language tokens), then fairseq-wd-bench per
    pair: each pair's table and the average, CTranslate2 given each pair's language tokens."""
    data, langs, teacher, _ = ml
    run("fairseq-wd-export", teacher, "--to", "ctranslate2", "--quantization", "none", "--output", tmp_path / "ct2")
    assert json.loads((tmp_path / "ct2" / "languages.json").read_text())["lang_pairs"] == ["src-tgt1", "src-tgt2"]
    options = shlex.join(["--task", "translation_multi_simple_epoch", *map(str, langs)])
    out = tmp_path / "bench"
    run("fairseq-wd-bench", data, "--model", f"teacher={teacher}", "--model", f"ct2={tmp_path / 'ct2'}",
        "--generate-args", options, "--beam", "2", "--repeats", "1", "--batch-size", "16", "--cpu",
        "--max-len-a", "1.2", "--max-len-b", "5", "--post-process", "none", "--output-dir", out)
    report = json.loads((out / "bench.json").read_text())
    assert list(report["pairs"]) == ["src-tgt1", "src-tgt2"]
    for target in PAIRS:
        pair = out / f"src-{target}"
        fairseq_hyps, ct2_hyps = ((pair / f"{n}.hyp").read_text().splitlines() for n in ("teacher", "ct2"))
        assert len(fairseq_hyps) == 16
        words = [w for h in ct2_hyps for w in h.split()]
        assert words and all(map(IN_SCRIPT[target], words)), (target, ct2_hyps[:3])
        assert sum(a == b for a, b in zip(fairseq_hyps, ct2_hyps)) >= 12, "the same beam search in float32"
        rows = report["pairs"][f"src-{target}"]
        assert rows["settings"]["pair"] == f"src-{target}" and abs(rows["models"][1]["chrf_vs_first"]) < 2
    bleu = [r["models"][1]["bleu"] for r in report["pairs"].values()]
    assert report["average"][1]["bleu"] == pytest.approx(sum(bleu) / 2, abs=0.01)
    assert "## Average over the 2 pairs" in (out / "bench.md").read_text()
    refused = run("fairseq-wd-bench", data, "--model", f"teacher={teacher}", "--generate-args", options + " -t tgt1",
                  "--cpu", "--output-dir", tmp_path / "x", check=False)
    assert refused.returncode != 0 and "every pair of --lang-pairs" in refused.stderr
    refused = run("fairseq-wd-bench", data, "--model", f"teacher={teacher}", "--generate-args", options,
                  "--references", f"src-tgt3={out / 'src-tgt1' / 'teacher.hyp'}", "--cpu", "--output-dir", tmp_path / "x",
                  check=False)
    assert refused.returncode != 0 and "src-tgt3=...: not a pair of --lang-pairs" in refused.stderr


def test_multilingual_pipeline_data_step_and_commands(tmp_path, monkeypatch):
    """`fairseq-wd-pipeline --pair` twice: its data step for real (one joint dictionary, each pair binarized
    with it, the language list that numbers the tokens), then every training's command read by fairseq's
    own parser (the real trainings are this file's tests above): one task family, the teacher's languages."""
    from fairseq_wd.cli.pipeline import get_parser
    from fairseq_wd.pipeline.corpus import CorpusError
    from fairseq_wd.pipeline.multilingual import MultilingualPipeline

    rng = random.Random(4)
    sentences = [toy_pair(rng) for _ in range(400)]
    pairs = []
    for t in PAIRS:
        (tmp_path / f"{t}.tsv").write_text("".join(f"{s}\t{TARGETS[t](s, g)}\n" for s, g in sentences))
        pairs += ["--pair", f"src-{t}={tmp_path / f'{t}.tsv'}"]
    work = tmp_path / "work"
    argv = ["--work-dir", str(work), *pairs, "--budget", "multilingual", "--test-size", "20", "--valid-size", "20"]
    for extra, message in ((["--shortlist"], "bilingual only"), (["--methods", "wd,layer-copy"], "layer-copy with --pair"),
                           (["--teacher", "t.pt"], "--teacher with --pair needs --data-bin")):
        with pytest.raises(CorpusError, match=message):
            MultilingualPipeline(get_parser().parse_args(argv + extra))
    pipe = MultilingualPipeline(get_parser().parse_args(argv + ["--methods", "kd,logit_kd,pkd,wd"]))
    work.mkdir()
    pipe.prepare(None)
    data = work / "data-bin"
    assert (data / "langs.txt").read_text() == "src\ntgt1\ntgt2\n"
    assert (data / "dict.src.txt").read_text() == (data / "dict.tgt1.txt").read_text() == (data / "dict.tgt2.txt").read_text()
    langs = pipe.language_flags()
    args = options.parse_args_and_arch(options.get_training_parser(), [str(data), "--task",
                                                                       "translation_multi_simple_epoch", *langs, "--arch", "transformer",
                                        "--max-source-positions", "1024", "--max-target-positions", "1024"])
    task = tasks.setup_task(args)
    task.load_dataset("valid")
    assert len(task.dataset("valid")) == 40, "both pairs' valid sets, read by fairseq's own task"
    assert [r for r in pipe.bench_inputs() if r.startswith("--references=")] == [
        f"--references=src-{t}={work / 'raw' / f'src-{t}' / f'test.{t}'}" for t in PAIRS]
    assert all(os.path.isfile(work / "raw" / f"src-{t}" / f"test.{t}") for t in PAIRS)

    commands = []
    monkeypatch.setattr(pipe, "sh", lambda *cmd, log=None, env=None: commands.append([str(c) for c in cmd]))
    pipe.teacher(None)
    pipe.teacher_output("teacher.pt")
    assert list(pipe.students("teacher.pt", "kd-bin")) == ["TINY " + METHODS[m][0] for m in ("kd", "logit_kd", "pkd", "wd")]
    trainings = {c[c.index("--save-dir") + 1].split(os.sep)[-1]: options.parse_args_and_arch(
        options.get_training_parser(), c[1:]) for c in commands if c[0] == "fairseq-train"}
    assert trainings.pop("teacher").share_all_embeddings
    expected = {"tiny_kd_seed1": "distillation", "tiny_logit_kd_seed1": "distillation", "tiny_pkd_seed1": "distillation",
                "tiny_wd_phase1_seed1": "weight_distillation", "tiny_wd_phase2_seed1": "distillation"}
    assert {name: a.task for name, a in trainings.items()} == {k: f"{v}_multi_simple_epoch" for k, v in expected.items()}
    for a in trainings.values():
        assert a.lang_pairs == "src-tgt1,src-tgt2" and a.decoder_langtok and a.encoder_langtok == "src"
        assert a.share_decoder_input_output_embed and not a.share_all_embeddings, "TINY: its own tied embedding"
    distill = next(c for c in commands if c[0] == "fairseq-wd-distill-data")
    assert distill[distill.index("--task") + 1] == "translation_multi_simple_epoch" and "--decoder-langtok" in distill


M2M_LANGS = ("tgt2", "xx", "src", "tgt1")  # --lang-dict: more languages than the data, in no sorted order


@pytest.fixture(scope="module")
def m2m(tmp_path_factory):
    """A teacher with M2M-100's argument layout, a valid checkpoint only (a few updates): `--fixed-dictionary`
    (the data's dictionary plus entries of its own, as M2M-100's model_dict.128k.txt beside data_dict.128k.txt;
    the data binarized with the data's), `--lang-dict` with four languages for two pairs, `--encoder-langtok src
    --decoder-langtok`. (data-bin, language options, teacher, fixed dictionary)."""
    root = tmp_path_factory.mktemp("m2m")
    raw, data, model = root / "raw", root / "data-bin", root / "model"
    raw.mkdir()
    model.mkdir()
    write_pairs(raw, (("train", 60, 5), ("valid", 8, 6), ("test", 8, 7)))
    run("fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt", "--trainpref", raw / "all",
        "--joined-dictionary", "--dict-only", "--destdir", raw / "dict", "--workers", "1")
    data_dict = raw / "dict" / "dict.src.txt"
    fixed = model / "model_dict.txt"
    fixed.write_text(data_dict.read_text() + "".join(f"modelonly{i} 0\n" for i in range(3)))
    for t in PAIRS:
        run("fairseq-preprocess", "--source-lang", "src", "--target-lang", t, "--destdir", data, "--workers", "1",
            *(x for split in ("train", "valid", "test") for x in (f"--{split}pref", raw / f"{split}.src-{t}")),
            "--srcdict", data_dict, "--tgtdict", data_dict)
    (model / "lang_dict.txt").write_text("".join(lang + "\n" for lang in M2M_LANGS))
    langs = ["--lang-pairs", "src-tgt1,src-tgt2", "--fixed-dictionary", fixed, "--lang-dict", model / "lang_dict.txt",
             "--encoder-langtok", "src", "--decoder-langtok"]
    run("fairseq-train", data, "--task", "translation_multi_simple_epoch", *langs, "--arch", "transformer",
        *TINY_DIMS, "--share-all-embeddings", "--save-dir", model, "--criterion", "label_smoothed_cross_entropy",
        "--label-smoothing", "0.1", "--max-update", 80, "--disable-validation", *TRAIN_FLAGS, env={"PYTHONPATH": ""})
    return data, langs, model / "checkpoint_last.pt", fixed


def test_m2m_layout_teacher_is_checked_exported_and_decoded_as_fairseq_does(m2m, tmp_path):
    """M2M-100's layout end to end: a distillation task accepts the teacher (its own --fixed-dictionary
    compared symbol by symbol), the CTranslate2 export has fairseq's vocabulary (the fixed dictionary, then
    the --lang-dict's tokens at fairseq's indices) and decodes every pair as fairseq-generate does; a
    folder whose forced target token differs from the bench's task options is refused."""
    from fairseq import checkpoint_utils

    data, langs, teacher, fixed = m2m
    task, _ = setup(m2m)
    fixed_symbols = Dictionary.load(str(fixed)).symbols
    assert task.source_dictionary.symbols == fixed_symbols + [f"__{lang}__" for lang in M2M_LANGS]
    assert task.teacher and task._symbols_compared, "its own --fixed-dictionary, named by its checkpoint, compared"
    task, _ = setup(m2m, "--fixed-dictionary", data / "dict.src.txt")  # the data's: 3 entries fewer
    with pytest.raises(CheckpointError, match="has 55 embedding rows, but this run's dictionary has 52"):
        task.teacher
    swapped = fixed.read_text().splitlines()
    swapped[3], swapped[4] = swapped[4], swapped[3]
    (tmp_path / "swapped.txt").write_text("\n".join(swapped) + "\n")
    task, _ = setup(m2m, "--fixed-dictionary", tmp_path / "swapped.txt")  # same size, other symbols
    with pytest.raises(CheckpointError, match=f"entry 7 is .* {re.escape(str(fixed))}"):
        task.teacher

    out = tmp_path / "ct2"
    run("fairseq-wd-export", teacher, "--to", "ctranslate2", "--quantization", "none", "--output", out)
    _, _, fairseq_task = checkpoint_utils.load_model_ensemble_and_task([str(teacher)])  # fairseq's own task
    vocabulary = json.loads((out / "shared_vocabulary.json").read_text())
    assert vocabulary == ["<blank>" if s == "<pad>" else s for s in fairseq_task.source_dictionary.symbols]
    for i, lang in enumerate(M2M_LANGS):
        assert vocabulary.index(f"__{lang}__") == fairseq_task.source_dictionary.index(f"__{lang}__") == \
            len(fixed_symbols) + i
    settings = json.loads((out / "languages.json").read_text())
    assert settings["prefixes"] == {f"src-{t}": [["__src__"], [f"__{t}__"]] for t in PAIRS}

    bench = shlex.join(["--task", "translation_multi_simple_epoch", *map(str, langs)])
    common = ["--generate-args", bench, "--beam", "1", "--repeats", "1", "--batch-size", "8", "--cpu",
              "--max-len-a", "1.2", "--max-len-b", "5", "--post-process", "none"]
    run("fairseq-wd-bench", data, "--model", f"teacher={teacher}", "--model", f"ct2={out}", *common,
        "--output-dir", tmp_path / "bench")
    for target in PAIRS:
        pair = tmp_path / "bench" / f"src-{target}"
        fairseq_hyps, ct2_hyps = ((pair / f"{n}.hyp").read_text().splitlines() for n in ("teacher", "ct2"))
        assert len(fairseq_hyps) == 8 and fairseq_hyps == ct2_hyps, target

    other = tmp_path / "other"  # as exported without --decoder-langtok: no forced target token
    other.mkdir()
    for name in os.listdir(out):
        os.symlink(out / name, other / name) if name != "languages.json" else None
    settings["prefixes"] = {pair: [source, []] for pair, (source, _) in settings["prefixes"].items()}
    (other / "languages.json").write_text(json.dumps(settings))
    refused = run("fairseq-wd-bench", data, "--model", f"ct2={other}", *common, "--output-dir", tmp_path / "x",
                  check=False)
    assert refused.returncode != 0 and "forces [] as the first target tokens" in refused.stderr, refused.stderr[-2000:]


def test_given_multilingual_teacher_is_checked_before_any_work(m2m, tmp_path):
    """`fairseq-wd-pipeline --data-bin --teacher --pair SRC-TGT`: the interface's refusals, and a data-bin
    binarized with another dictionary refused by the check that runs before any step."""
    from fairseq_wd.cli.pipeline import get_parser
    from fairseq_wd.pipeline.corpus import CorpusError
    from fairseq_wd.pipeline.multilingual import MultilingualPipeline

    data, _, teacher, fixed = m2m
    given = ["--work-dir", str(tmp_path / "w"), "--budget", "multilingual", "--teacher", str(teacher)]
    pairs = ["--pair", "src-tgt1", "--pair", "src-tgt2"]
    for argv, message in ((given + pairs, "needs --data-bin"),
                          (given + ["--data-bin", str(data), "--pair", "src-tgt1=x.tsv"], "write --pair src-tgt1$"),
                          (given + ["--data-bin", str(data), *pairs, "--references", "x.txt"], "SRC-TGT=FILE"),
                          (given + ["--data-bin", str(data), *pairs, "--teacher-dict", str(fixed)], "drop --teacher-dict"),
                          (given[:4] + pairs, "give its corpus, --pair src-tgt1=TSV")):
        with pytest.raises(CorpusError, match=message):
            MultilingualPipeline(get_parser().parse_args(argv))
    pipe = MultilingualPipeline(get_parser().parse_args(given + ["--data-bin", str(data), *pairs]))
    flags = pipe.language_flags()
    assert flags[flags.index("--fixed-dictionary") + 1] == str(fixed) and "--decoder-langtok" in flags
    assert flags[flags.index("--lang-dict") + 1] == str(fixed.parent / "lang_dict.txt")
    assert pipe.data_and_teacher() == str(teacher)

    other = tmp_path / "other-bin"  # the same files, but a data dictionary with two entries swapped
    other.mkdir()
    for name in os.listdir(data):
        os.symlink(data / name, other / name) if not name.startswith("dict.") else None
    symbols = (data / "dict.src.txt").read_text().splitlines()
    symbols[3], symbols[4] = symbols[4], symbols[3]
    for lang in ("src", *PAIRS):
        (other / f"dict.{lang}.txt").write_text("\n".join(symbols) + "\n")
    pipe = MultilingualPipeline(get_parser().parse_args(given + ["--data-bin", str(other), *pairs]))
    with pytest.raises(CheckpointError, match="dict.src.txt is not the teacher's dictionary: entry 7"):
        pipe.data_and_teacher()


def test_pipeline_distils_a_given_m2m_layout_teacher(m2m, tmp_path):
    """The toy M2M-layout teacher through fairseq-wd-pipeline end to end (KD and WD students, CTranslate2,
    the bench of both pairs): every student trained with the teacher's language options from its checkpoint."""
    data, _, teacher, fixed = m2m
    work, reference = tmp_path / "work", data.parent / "raw" / "test.src-tgt1.tgt1"
    run("fairseq-wd-pipeline", "--budget", "multilingual", "--data-bin", data, "--teacher", teacher, "--pair",
        "src-tgt1", "--pair", "src-tgt2", "--references", f"src-tgt1={reference}", "--methods", "kd,wd",
        "--update-scale", "0.005", "--bench-repeats", "1", "--post-process", "none", "--work-dir", work,
        "--train-args=--max-tokens 600")
    assert not os.path.exists(work / "data-bin") and (work / "kd-bin" / "train.src-tgt2.tgt2.idx").exists()
    for student in ("tiny_kd_seed1", "tiny_wd_phase1_seed1", "tiny_wd_phase2_seed1"):
        cfg = torch.load(work / student / "checkpoint_last.pt", weights_only=False)["cfg"]["task"]
        assert (cfg.fixed_dictionary, cfg.lang_dict) == (str(fixed), str(fixed.parent / "lang_dict.txt")), student
        assert cfg.lang_pairs == ["src-tgt1", "src-tgt2"] and tuple(cfg.langtoks["main"]) == ("src", "tgt")
    assert json.loads((work / "ct2" / "tiny_wd_seed1" / "languages.json").read_text())["prefixes"]["src-tgt2"] == \
        [["__src__"], ["__tgt2__"]]
    report = json.loads((work / "bench" / "bench.json").read_text())
    assert list(report["pairs"]) == ["src-tgt1", "src-tgt2"]
    names = [row["name"] for row in report["average"]]
    assert names[:3] == ["teacher", "TINY KD (orig+teacher-out, CE)", "TINY WD (orig+teacher-out, generator then CE)"]
    assert any("CTranslate2" in name for name in names[3:]), names
    assert (work / "bench" / "src-tgt1" / "references.txt").read_text() == reference.read_text()
    assert "| TINY WD" in (work / "results.md").read_text()
