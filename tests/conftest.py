"""Session fixtures: tiny data and a teacher, made with the real fairseq commands (helpers: utils.py)."""
import pytest

from utils import TINY_DIMS, run, train, write_split


@pytest.fixture(scope="session")
def raw_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("raw")
    write_split(d, "train", 600, 1)
    write_split(d, "valid", 20, 2)
    write_split(d, "test", 20, 3)
    return d


@pytest.fixture(scope="session")
def data_bin(raw_dir, tmp_path_factory):
    dest = tmp_path_factory.mktemp("data-bin")
    run("fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt",
        "--trainpref", raw_dir / "train", "--validpref", raw_dir / "valid",
        "--testpref", raw_dir / "test", "--destdir", dest, "--workers", "1")
    return dest


@pytest.fixture(scope="session")
def teacher(data_bin, tmp_path_factory):
    """A 2-2 d32 teacher, trained long enough to translate the toy language reasonably."""
    save = tmp_path_factory.mktemp("teacher")
    return train(data_bin, save, "wd_transformer_base", *TINY_DIMS, updates=300)
