"""Bad corpus input: an error naming the file and line, before any training starts."""
import os
import re

import pytest

from utils import run
from fairseq_wd.pipeline.corpus import CorpusError, read_pairs, split

GOOD = b"a house\tVOHAS A\n"


@pytest.mark.parametrize("content,message", [
    (GOOD + b"caf\xe9\tEFAC\n", ":2: not UTF-8 (byte 0xe9 at column 4)"),
    (GOOD + b"a red house\r\n", ":2: Windows line end"),
    (GOOD + b"only one column\n", ":2: expected 'source<TAB>target', found 1 column(s)"),
    (GOOD + b"a\tb\tc\n", ":2: expected 'source<TAB>target', found 3 column(s)"),
    (GOOD + b"a green house\t \n", ":2: empty target side"),
    (b"\tVOHAS\n", ":1: empty source side"),
], ids=["non-utf8", "crlf", "one-column", "three-columns", "empty-target", "empty-source"])
def test_bad_tsv_line_is_named(content, message, tmp_path):
    path = tmp_path / "corpus.tsv"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=re.escape(f"{path}{message}")):
        read_pairs(str(path))


def test_line_aligned_files(tmp_path):
    src, tgt = tmp_path / "c.en", tmp_path / "c.ro"
    src.write_text("a house\na red house\n")
    tgt.write_text("VOHAS A\n")
    with pytest.raises(CorpusError, match="has 2 lines but .* has 1: not line-aligned"):
        read_pairs(src_file=str(src), tgt_file=str(tgt))
    tgt.write_text("VOHAS A\n\n")
    with pytest.raises(CorpusError, match=f"{tgt}:2: empty target side"):
        read_pairs(src_file=str(src), tgt_file=str(tgt))
    tgt.write_text("VOHAS A\nESUOH DER A\n")
    assert read_pairs(src_file=str(src), tgt_file=str(tgt)) == [("a house", "VOHAS A"), ("a red house", "ESUOH DER A")]


def test_corpus_smaller_than_the_splits():
    with pytest.raises(CorpusError, match="850 sentence pairs: too few for a 500-sentence test and 300-sentence valid"):
        split([("a", "b")] * 850)


def test_pipeline_refuses_a_sentence_longer_than_the_positions_before_training(tmp_path):
    words = "ana are mere si pere la piata mare".split()
    rows = [f"{' '.join(words[i % 8:] + words[:i % 8])}\t{' '.join(words[::-1])}" for i in range(400)]
    rows[123] = " ".join(words * 200) + "\tLONG"  # 1600 words
    (tmp_path / "c.tsv").write_text("\n".join(rows) + "\n")
    proc = run("fairseq-wd-pipeline", "--tsv", tmp_path / "c.tsv", "--test-size", 20, "--valid-size", 20,
               "--work-dir", tmp_path / "work", check=False)
    assert proc.returncode != 0
    assert "more than the model's 1024 positions" in proc.stderr and ".en:" in proc.stderr, proc.stderr[-2000:]
    assert not os.path.exists(tmp_path / "work" / "teacher")
