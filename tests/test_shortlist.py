"""Lexical shortlists: the count model learns the toy dictionary, vmap.txt is CTranslate2's format and is
checked line by line, and fairseq-generate over a shortlist decodes as plain fairseq-generate where it
provably must (every target a candidate; greedy search whose plain output is all candidates)."""
import re
import shutil

import numpy as np
import pytest
import torch
from utils import USER_DIR, WORDS, run

import fairseq_wd  # noqa: F401
from fairseq_wd.datasets.data_bin import dictionaries, generate_batches, read_split
from fairseq_wd.shortlist import vmap as sl
from fairseq_wd.cli.shortlist import main as shortlist_command
from fairseq_wd.export import ct2


def generate(data, teacher, *extra, beam=4, check=True):
    """fairseq-generate of the valid split, batches of 4: {id: (tokens, score, positional scores)} and the log."""
    proc = run("fairseq-generate", data, "--user-dir", USER_DIR, "--task", "distillation", "--path", teacher,
               "--gen-subset", "valid", "--beam", beam, "--batch-size", 4, "--cpu", *extra, check=check)
    hyps, scores = {}, {}
    for line in proc.stdout.splitlines():
        kind, _, rest = line.partition("-")
        if kind in ("H", "P") and rest[:1].isdigit():
            i, *fields = rest.split("\t")
            (hyps if kind == "H" else scores)[int(i)] = fields
    return {i: (h[1].split(), h[0], scores[i][0]) for i, h in hyps.items()}, proc


def candidate_sets(shortlist, data, batch_size=4):
    """Sentence id -> the set of target symbols its batch may produce (fairseq-generate's batches)."""
    sources, targets = read_split(data, "valid", "src", "tgt")
    tgt_dict = dictionaries(data, "src", "tgt")[1]
    result = {}
    for batch in generate_batches(np.array([len(s) for s in sources]), np.array([len(t) for t in targets]),
                                    batch_size):
        ids = shortlist.candidates(torch.from_numpy(np.concatenate([sources[i] for i in batch])))
        result.update({int(i): {tgt_dict[j] for j in ids.tolist()} for i in batch})
    return result


@pytest.fixture(scope="module")
def plain(data_bin, teacher):
    return {beam: generate(data_bin, teacher, beam=beam)[0] for beam in (1, 4)}


def test_count_model_learns_the_toy_dictionary(data_bin):
    """Each toy word has one translation (its reverse, upper-cased): IBM-1's best target for every source
    word is it, though the frequent targets co-occur with every word."""
    vmap = sl.build_vmap(str(data_bin), top_k=1, frequent=3)
    assert vmap.rules == {w: [w[::-1].upper()] for w in WORDS}
    assert len(vmap.always) == 3 and set(vmap.always) <= {w[::-1].upper() for w in WORDS}


def test_vmap_is_ctranslate2s_format_and_reads_back(data_bin, tmp_path):
    src_dict, tgt_dict = dictionaries(str(data_bin), "src", "tgt")
    vmap = sl.build_vmap(str(data_bin), top_k=2, frequent=2)
    path = str(tmp_path / "vmap.txt")
    sl.write_vmap(vmap, path, src_dict, tgt_dict)
    lines = open(path, encoding="utf-8").read().split("\n")
    assert lines[-1] == "" and lines[0].startswith("\t") and len(lines) == len(WORDS) + 2
    assert all(re.fullmatch(r"[^\t ]*\t[^\t ]+( [^\t ]+)*", line) for line in lines[:-1])
    assert sl.read_vmap(path, src_dict, tgt_dict) == vmap
    with pytest.raises(sl.VmapError, match="exists"):
        sl.write_vmap(vmap, path, src_dict, tgt_dict)


BROKEN = {
    "duplicate key": ("\tANA\nana\tANA\nmere\tEREM\nana\tERA\n", r"line 4: key 'ana' is also on line 2"),
    "unknown target": ("\tANA\nana\tANA\nmere\tEREM ZORBAX\n", r"line 3: target 'ZORBAX' is not in the target dict"),
    "two tabs": ("\tANA\nana\tANA\nmere\tEREM\tERA\n", r"line 3: 2 TABs"),
    "double space": ("\tANA\nana\tANA  ERA\n", r"line 2: empty target token"),
    "two always lines": ("\tANA\n\tERA\n", r"line 2: the always line \(empty key\) is also on line 1"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_vmap_names_its_line(data_bin, tmp_path, case):
    text, error = BROKEN[case]
    path = tmp_path / "vmap.txt"
    path.write_text(text)
    with pytest.raises(sl.VmapError, match=error):
        sl.Shortlist.from_file(str(path), *dictionaries(str(data_bin), "src", "tgt"))


def test_fairseq_generate_stops_on_a_broken_vmap_before_decoding(data_bin, teacher, tmp_path):
    path = tmp_path / "vmap.txt"
    path.write_text(BROKEN["unknown target"][0])
    _, proc = generate(data_bin, teacher, "--shortlist", path, check=False)
    assert proc.returncode != 0 and f"{path}, line 3: target 'ZORBAX'" in proc.stderr
    assert "loading model(s)" not in proc.stdout + proc.stderr and "H-" not in proc.stdout


def test_whole_vocabulary_shortlist_decodes_as_plain_fairseq(data_bin, teacher, tmp_path, plain):
    """Every target symbol always allowed: the same hypotheses and positional scores (4 digits), the same
    scores to float rounding (the candidate rows are a copy of the output matrix: another GEMM blocking)."""
    tgt_dict = dictionaries(str(data_bin), "src", "tgt")[1]
    path = str(tmp_path / "vmap.txt")
    sl.write_vmap(sl.Vmap(always=tgt_dict.symbols[tgt_dict.nspecial:]), path, tgt_dict=tgt_dict)
    hyps, _ = generate(data_bin, teacher, "--shortlist", path, beam=4)
    assert len(hyps) == 20 and set(hyps) == set(plain[4])
    for i, (tokens, score, positional) in hyps.items():
        assert (tokens, positional) == (plain[4][i][0], plain[4][i][2])
        assert abs(float(score) - float(plain[4][i][1])) < 1e-5


def test_real_shortlist_changes_only_what_it_must(data_bin, teacher, tmp_path, plain):
    """The toy dictionary's shortlist (one target per source word), nothing always, less the rules of two
    words: every hypothesis token is a candidate of its batch, so a plain hypothesis outside the candidates
    changes; greedy output lying within them is plain greedy output (argmax over a subset that holds the
    argmax). With beam search that need not hold (scores renormalised over the candidates can reorder beams)."""
    src_dict, tgt_dict = dictionaries(str(data_bin), "src", "tgt")
    vmap = sl.build_vmap(str(data_bin), top_k=1, frequent=0)
    del vmap.rules["mare"], vmap.rules["casa"]
    path = str(tmp_path / "vmap.txt")
    sl.write_vmap(vmap, path, src_dict, tgt_dict)
    allowed = candidate_sets(sl.Shortlist(vmap, src_dict, tgt_dict), str(data_bin))
    for beam in (1, 4):
        hyps, proc = generate(data_bin, teacher, "--shortlist", path, beam=beam)
        assert "shortlist" in proc.stderr and len(hyps) == 20
        assert all(set(tokens) <= allowed[i] for i, (tokens, _, _) in hyps.items())
        inside = [i for i, (tokens, _, _) in plain[beam].items() if set(tokens) <= allowed[i]]
        assert 0 < len(inside) < 20
        assert all(hyps[i][0] != plain[beam][i][0] for i in set(hyps) - set(inside))
        if beam == 1:
            assert all(hyps[i][0] == plain[1][i][0] for i in inside)


def test_command_writes_reports_and_refuses_to_overwrite(data_bin, tmp_path):
    out = tmp_path / "vmap.txt"
    args = [data_bin, "--output", out, "--train-data", data_bin, "--top-k", 1, "--frequent", 2, "--batch-size", 4]
    proc = run("fairseq-wd-shortlist", *args)
    assert f"wrote {out}: {len(WORDS)} source keys x top 1, 2 always" in proc.stdout
    assert re.search(r"valid, batches of 4: coverage of reference tokens: 100.00% .* over 5 batches", proc.stdout)
    assert len(out.read_text().splitlines()) == len(WORDS) + 1
    with pytest.raises(SystemExit, match="vmap.txt exists; choose another --output"):
        shortlist_command([str(a) for a in args])
    other = tmp_path / "other-bin"  # the same data-bin, two target symbols swapped in its dictionary
    shutil.copytree(data_bin, other)
    lines = (other / "dict.tgt.txt").read_text().splitlines(keepends=True)
    (other / "dict.tgt.txt").write_text("".join([lines[1], lines[0], *lines[2:]]))
    with pytest.raises(SystemExit, match="dictionaries differ from"):
        shortlist_command([str(data_bin), "--output", str(tmp_path / "x.txt"), "--train-data", str(other)])


def test_ctranslate2_reads_the_same_candidates(data_bin, teacher, tmp_path):
    """CTranslate2 given our vmap.txt (fairseq-wd-export --vmap, ct2.translate's use_vmap) produces only the
    candidates shortlist.py computes for the batch: it parses the file as written (a misread target would
    become <unk>, a misread key drop out)."""
    pytest.importorskip("ctranslate2")
    src_dict, tgt_dict = dictionaries(str(data_bin), "src", "tgt")
    vmap = sl.build_vmap(str(data_bin), top_k=1, frequent=0)
    del vmap.rules["mare"], vmap.rules["casa"]
    sl.write_vmap(vmap, str(tmp_path / "vmap.txt"), src_dict, tgt_dict)
    model = tmp_path / "ct2"
    run("fairseq-wd-export", teacher, "--to", "ctranslate2", "--quantization", "none", "--data", data_bin,
        "--vmap", tmp_path / "vmap.txt", "--output", model)
    allowed = candidate_sets(sl.Shortlist(vmap, src_dict, tgt_dict), str(data_bin))
    sources, targets = read_split(str(data_bin), "valid", "src", "tgt")
    batches = generate_batches(np.array([len(s) for s in sources]), np.array([len(t) for t in targets]), 4)
    tokens = [src_dict.string(s).split() for s in sources]
    outside = {}
    for use_vmap in (False, True):
        outputs, _, _ = ct2.translate(str(model), tokens, batches, 4, 1.0, 1, use_vmap=use_vmap)
        outside[use_vmap] = sum(not set(out) <= allowed[i] for i, out in enumerate(outputs))
    assert outside[False] > 0 and outside[True] == 0
