"""fairseq-wd-pipeline from what a WMT or NIST user has: a fairseq-preprocess data-bin with BPE and a
trained teacher, several references; the random cut without train sources; inputs refused up front."""
import json
import os
import random

from utils import TINY_DIMS, run, toy_pair, train

import pytest
import torch

from fairseq_wd.cli.pipeline import get_parser, main
from fairseq_wd.pipeline.experiment import Pipeline
from fairseq_wd.pipeline import corpus


def bpe(sentence):
    """subword_nmt's look: words longer than 4 characters split into pieces joined by '@@ '."""
    return " ".join(f"{w[:3]}@@ {w[3:]}" if len(w) > 4 else w for w in sentence.split())


def write_bpe_corpus(folder, seed=3):
    rng = random.Random(seed)
    for split, n in (("train", 600), ("valid", 20), ("test", 20)):
        pairs = [toy_pair(rng) for _ in range(n)]
        for lang, col in (("src", 0), ("tgt", 1)):
            (folder / f"{split}.bpe.{lang}").write_text("".join(bpe(p[col]) + "\n" for p in pairs))
        (folder / f"{split}.raw.tgt").write_text("".join(p[1] + "\n" for p in pairs))


def test_pipeline_from_a_bpe_data_bin_and_a_given_teacher(tmp_path):
    write_bpe_corpus(tmp_path)
    data_bin = tmp_path / "data-bin"
    run("fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt", "--trainpref", tmp_path / "train.bpe",
        "--validpref", tmp_path / "valid.bpe", "--testpref", tmp_path / "test.bpe", "--destdir", data_bin,
        "--workers", "1")  # separate dictionaries
    teacher = train(data_bin, tmp_path / "teacher", "wd_transformer_base", *TINY_DIMS, updates=200)
    reference = tmp_path / "test.raw.tgt"
    work = tmp_path / "work"
    proc = run("fairseq-wd-pipeline", "--data-bin", data_bin, "--teacher", teacher, "--post-process", "subword_nmt",
               "--references", reference, "--references", reference, "--methods", "wd", "--update-scale", "0.02",
               "--bench-repeats", "1", "--train-args=--max-tokens 600", "--shortlist", "--work-dir", work)
    assert "the given data-bin" in proc.stdout and not os.path.exists(work / "data-bin")
    assert (work / "shortlist" / "vmap.txt").exists() and "--train-data" in proc.stdout, "built from the teacher output"
    report = json.load(open(work / "bench" / "bench.json"))
    rows = {m["name"]: m for m in report["models"] if not m["name"].endswith(" + shortlist")}
    wd = "TINY WD (orig+teacher-out, generator then CE)"
    assert list(rows) == ["teacher", wd, "teacher, CTranslate2 int8", "teacher, CTranslate2 float32",
                          f"{wd}, CTranslate2 int8", f"{wd}, CTranslate2 float32"]
    assert [m["name"] for m in report["models"]] == [n for name in rows for n in (name, f"{name} + shortlist")]
    assert "nrefs:2" in report["settings"]["sacrebleu"] and report["settings"]["sentences"] == 20
    for name in rows:
        assert "@@" not in (work / "bench" / f"{name}.hyp").read_text(), f"{name}: BPE removed before BLEU"
    assert rows["teacher"]["bleu"] > 20, "hypotheses and references line up, so the toy teacher scores"
    student = torch.load(work / "tiny_wd_phase2_seed1" / "checkpoint_last.pt", weights_only=True)["cfg"]["model"]
    assert (student.encoder_embed_dim, student.encoder_layers, student.decoder_embed_dim) == (32, 2, 16), \
        "the student keeps the given teacher's encoder, not the budget's"
    assert "| TINY WD" in (work / "results.md").read_text()


def test_pipeline_refuses_bad_input_before_any_work(data_bin, teacher, tmp_path):
    def refused(*args):
        """fairseq-wd-pipeline's own exit message (in this process: the checks come before any work)."""
        with pytest.raises(SystemExit) as stop:
            main([*map(str, args), "--work-dir", str(tmp_path / "w")])
        assert str(stop.value.code).startswith("fairseq-wd-pipeline: error: "), stop.value.code
        return stop.value.code

    assert "--teacher-dict" in refused("--teacher", teacher)
    (tmp_path / "dict.txt").write_text("a 1\nb 1\n")
    assert "not the teacher's dictionary" in refused("--teacher", teacher, "--teacher-dict", tmp_path / "dict.txt",
                                                     "--teacher-spm", __file__)
    assert "English-Romanian" in refused("--source-lang", "ro", "--target-lang", "en")
    assert "lacks dict.src.txt" in refused("--data-bin", tmp_path, "--source-lang", "src", "--target-lang", "tgt")
    assert "drop --tsv" in refused("--data-bin", data_bin, "--tsv", "x.tsv")
    other = tmp_path / "other"
    write_bpe_corpus(tmp_path)
    run("fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt", "--trainpref", tmp_path / "train.bpe",
        "--validpref", tmp_path / "valid.bpe", "--testpref", tmp_path / "test.bpe", "--destdir", other, "--workers", "1",
        "--padding-factor", "1")  # 22 entries; the teacher's dictionary has 24 rows
    assert "not the teacher's dictionary" in refused("--data-bin", other, "--teacher", teacher)
    rows = (data_bin / "dict.tgt.txt").read_text().splitlines()
    (tmp_path / "swapped.txt").write_text("\n".join([rows[1], rows[0], *rows[2:]]) + "\n")  # same size
    assert "entry 4 is" in refused("--data-bin", data_bin, "--teacher", teacher, "--teacher-dict", tmp_path / "swapped.txt")
    assert "decoder has 3 layers and the student's 2" in refused("--student", "small")
    assert "decoder has 5 layers" in refused("--student", "small", "--train-teacher",
                                             "--teacher-args=--decoder-layers 5")
    assert not os.path.exists(tmp_path / "w" / "teacher") and not os.path.exists(tmp_path / "w" / "data-bin")


def test_random_cut_drops_test_and_valid_sources_seen_in_train():
    pairs = [(f"s{i % 700}", f"t{i}") for i in range(1000)]  # sources 0-299 occur twice
    splits, removed = corpus.split(pairs, test=100, valid=50)
    train = {s for s, _ in splits["train"]}
    assert not train & {s for s, _ in splits["test"] + splits["valid"]}
    assert len(splits["test"]) == 100 - removed["test"] and len(splits["valid"]) == 50 - removed["valid"]
    assert removed["test"] > 0 and len(splits["train"]) == 850, "train stays as cut"
    assert corpus.split(pairs, test=100, valid=50) == (splits, removed), "seeded"


def test_chinese_gets_cjk_coverage_and_zh_bleu(tmp_path):
    assert corpus.character_coverage("zh", "en") == 0.9995 and corpus.character_coverage("en", "ro") == 1.0
    parse = get_parser().parse_args
    assert Pipeline(parse(["--tsv", "c.tsv", "--source-lang", "en", "--target-lang", "zh"])).bleu_tokenize() == "zh"
    assert Pipeline(parse(["--tsv", "c.tsv", "--source-lang", "zh", "--target-lang", "en"])).bleu_tokenize() == "13a"
    assert Pipeline(parse(["--target-lang", "zh", "--bleu-tokenize", "intl"])).bleu_tokenize() == "intl"
