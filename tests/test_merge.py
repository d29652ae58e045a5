"""fairseq-wd-merge: separate runs' bench outputs (one seed each) merged into one table from their files
alone, and refused, naming the runs and what differs, when they do not share test set, references,
teacher or bench settings.

The runs are written as fairseq-wd-bench writes them: rows and tests made by scoring.score_bench (the
bench's own scoring), the settings bench() writes, provenance.record's checksums and references, NAME.hyp
files; the checkpoints are small files standing for a shared teacher and each seed's students."""
import ast
import json
import os
import random
import re
import statistics
import subprocess
from types import SimpleNamespace

import pytest
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest
from utils import BIN, REPO, WORDS

from fairseq_wd.bench import scoring
from fairseq_wd.bench import merge as bm
from fairseq_wd.bench import provenance
from fairseq_wd.cli import merge as cli

N_SAMPLES = 200
KD, WD = "TINY KD", "TINY WD"
NOISE = {"teacher": 0.1, KD: 0.3, WD: 0.22}


def noisy(lines, rng, rate):
    return [" ".join(rng.choice(WORDS) if rng.random() < rate else w for w in line.split()) for line in lines]


def toy_test(n=60):
    rng = random.Random(3)
    refs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for _ in range(n)]
    return [" ".join(reversed(r.split())) for r in refs], refs  # sources (data-bin pieces, joined), references


def hypotheses(refs, seed):
    """Each row's output in a run of `seed`; the teacher's is the same in every run (one checkpoint)."""
    return {name: noisy(refs, random.Random(0 if name == "teacher" else 100 * seed + k), rate)
            for k, (name, rate) in enumerate(NOISE.items())}


def write_run(folder, checkpoints, seed, sources=None, references=None, **settings):
    """A bench output as bench() writes it, for the run of `seed` (rows teacher, KD, WD; --compare WD=KD)."""
    test_sources, refs = toy_test()
    sources, references = sources or test_sources, references or refs
    hyps = hypotheses(refs, seed)
    teacher = checkpoints / "teacher.pt"
    if not teacher.exists():
        teacher.write_bytes(b"teacher weights")
    models = {"teacher": [str(teacher)]}
    for name in (KD, WD):
        path = checkpoints / f"{name.split()[1]}.seed{seed}.pt"
        path.write_bytes(f"{name} seed {seed}".encode())
        models[name] = [str(path)]
    decoded = {name: [SimpleNamespace(hypotheses=h, lengths=[len(x.split()) for x in h],
                                      sentences_per_s=100.0 * (k + 1) + seed, tokens_per_s=900.0 * (k + 1) + seed,
                                      warmup_s=0.1, first_batch_cost_s=0.2)]
               for k, (name, h) in enumerate(hyps.items())}
    test = SimpleNamespace(sources=[s.split() for s in sources], detok=" ".join)
    scorer = scoring.Scorer([references])
    with pytest.MonkeyPatch.context() as mp:  # a run's own tests are not read back (merge rescores): not made
        mp.setattr(scoring, "compare", lambda scorer, system, baseline: {"seed_pairs": [[1, 1]]})
        scored, _, _ = scoring.score_bench(models, decoded, decoded, {n: (1000, 4000) for n in models},
                                              {n: "fairseq" for n in models}, test, scorer, [200] * len(sources),
                                              [(WD, KD)], WD)
    base = {"data": "/somewhere/data-bin", "pair": None, "gen_subset": "test", "sentences": len(sources), "beam": 6,
            "lenpen": 1.0, "batch_size": 64, "max_len_a": 0, "max_len_b": 200, "min_len": 1, "repeats": 3,
            "threads": 2, "device": "cpu", "generate_args": [], "shortlists": [],
            "sacrebleu": scorer.signatures["bleu"], "sacrebleu_chrf": scorer.signatures["chrf"],
            "bootstrap_samples": scoring.BOOTSTRAP_SAMPLES}
    base.update(settings)
    base.update(provenance.record(folder, test.sources, [references], models))
    for name, h in hyps.items():
        (folder / f"{name}.hyp").write_text("".join(line + "\n" for line in h), encoding="utf-8")
    (folder / "bench.json").write_text(json.dumps({"settings": base, **scored}, indent=2))
    return hyps


@pytest.fixture
def runs(tmp_path):
    """Three runs, seeds 1 to 3, each in its own machine's folder seedS/bench."""
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    folders, hyps = [], []
    for seed in (1, 2, 3):
        folder = tmp_path / f"seed{seed}" / "bench"
        folder.mkdir(parents=True)
        hyps.append(write_run(folder, checkpoints, seed))
        folders.append(folder)
    return folders, hyps, checkpoints


def test_merge_means_sds_and_each_seed_pairs_p(runs, tmp_path, monkeypatch):
    folders, hyps, _ = runs
    report = bm.merge([str(f) for f in folders], n_samples=N_SAMPLES)
    _, refs = toy_test()
    rows = {m["name"]: m for m in report["models"]}
    assert [r["label"] for r in report["runs"]] == ["seed1/bench", "seed2/bench", "seed3/bench"]
    assert len(rows["teacher"]["seeds"]) == 1 and rows["teacher"]["bleu_sd"] is None, "one checkpoint in all runs"
    for name in (KD, WD):
        for metric, sacre in (("bleu", BLEU()), ("chrf", CHRF())):
            scores = [sacre.corpus_score(h[name], [refs]).score for h in hyps]
            assert rows[name][metric] == pytest.approx(statistics.mean(scores), abs=1e-9)
            assert rows[name][f"{metric}_sd"] == pytest.approx(statistics.stdev(scores), abs=1e-9)
            assert rows[name][f"{metric}_sd"] > 0
    first = json.loads((folders[0] / "bench.json").read_text())["models"]
    assert [m["speed"]["sentences_per_s"] for m in report["models"]] == [m["sentences_per_s"] for m in first]
    tests = {(t["model"], t["baseline"]): t for t in report["significance"]}
    assert list(tests) == [(KD, "teacher"), (WD, "teacher"), (WD, KD)]
    wd_kd = tests[(WD, KD)]
    assert wd_kd["seed_pairs"] == ["seed1/bench", "seed2/bench", "seed3/bench"]
    monkeypatch.delenv("SACREBLEU_SEED", raising=False)
    for metric, key in (("bleu", "BLEU"), ("chrf", "chrF2")):
        expected = [PairedTest([("kd", h[KD]), ("wd", h[WD])], {metric: BLEU() if metric == "bleu" else CHRF()},
                               [refs], test_type="bs", n_samples=N_SAMPLES)()[1][key][1] for h in hyps]
        per_seed = wd_kd[metric]["per_seed"]
        assert [s["p"] for s in per_seed] == [e.p_value for e in expected], "sacrebleu's paired bootstrap, per seed"
        diffs = [s["difference"] for s in per_seed]
        assert diffs == pytest.approx([e.score - rows[KD]["seeds"][k][metric] for k, e in enumerate(expected)])
        assert wd_kd[metric]["difference"] == pytest.approx(statistics.mean(diffs))
        assert wd_kd[metric]["sd"] == pytest.approx(statistics.stdev(diffs))
    assert len(tests[(WD, "teacher")]["seed_pairs"]) == 3, "each WD seed against the one teacher"


def test_merged_files_name_no_machine_path(runs, tmp_path, capsys):
    """merged.md and merged.json from the command (its main, in this process; the console script is
    installed); the checkpoints' and data-bin's absolute paths of the runs appear in neither."""
    folders, _, _ = runs
    out = tmp_path / "merged"
    assert os.access(os.path.join(BIN, "fairseq-wd-merge"), os.X_OK), "pip install -e . installs the command"
    cli.main([*map(str, folders), "--output", str(out), "--bootstrap-samples", str(N_SAMPLES)])
    stdout = capsys.readouterr().out
    md, js = (out / "merged.md").read_text(), (out / "merged.json").read_text()
    for text in (md, js):
        assert str(tmp_path) not in text and "/somewhere" not in text
    assert not re.search(r"(^|[\s`(])/\w", md), "no absolute path"
    assert re.search(rf"^\| 3 \| {WD} \| 3 \| \d+\.\d\d \+- \d\.\d\d \| ", md, re.M)
    assert re.search(rf"^\| #3 {WD} \| #2 {KD} \| 3 \| \+\d+\.\d\d \+- \d\.\d\d \| "
                     r"seed1/bench \+\d+\.\d\d \(0\.\d{4}\), "
                     r"seed2/bench ", md, re.M)
    assert md in stdout


def refused(folders, **kwargs):
    with pytest.raises(bm.MergeError) as e:
        bm.merge([str(f) for f in folders], n_samples=N_SAMPLES, **kwargs)
    return str(e.value)


def replace_run(folder, checkpoints, seed, **kwargs):
    for f in folder.iterdir():
        f.unlink()
    write_run(folder, checkpoints, seed, **kwargs)


def test_refuses_other_references_test_set_teacher_or_settings(runs):
    folders, _, checkpoints = runs
    sources, refs = toy_test()
    replace_run(folders[2], checkpoints, 3, references=refs[:-1] + ["casa mare"])
    why = refused(folders)
    assert "differ in their references: references_sha256: seed1/bench, seed2/bench have [" in why
    problems = why.split("Merge only")[0]
    assert "seed3/bench has [" in problems and "test set" not in problems and "teacher" not in problems

    replace_run(folders[2], checkpoints, 3, sources=sources[:-1] + ["casa noua"])
    why = refused(folders).split("Merge only")[0]
    assert "differ in their test set: sources_sha256: seed1/bench, seed2/bench have" in why and "references" not in why

    replace_run(folders[2], checkpoints, 3, beam=4, device="cuda")
    assert "differ in their bench settings: beam: seed1/bench, seed2/bench have 6; seed3/bench has 4; device: " \
           "seed1/bench, seed2/bench have 'cpu'; seed3/bench has 'cuda'" in refused(folders)

    replace_run(folders[2], checkpoints, 3)  # as it was
    (checkpoints / "teacher.pt").write_bytes(b"a teacher trained again")
    replace_run(folders[1], checkpoints, 2)
    why = refused(folders).split("Merge only")[0]
    assert "differ in their teacher (row 'teacher', checkpoint sha256): seed1/bench, seed3/bench have [" in why
    assert "; seed2/bench has [" in why and "settings" not in why
    assert "the teacher row 'nobody' is missing from seed1/bench, seed2/bench, seed3/bench" in refused(
        folders, teacher="nobody")


def test_refuses_unrecorded_or_changed_files(runs, capsys):
    folders, _, _ = runs
    hyp = folders[1] / f"{WD}.hyp"
    lines = hyp.read_text().splitlines()
    hyp.write_text("\n".join(["casa"] + lines[1:]) + "\n")
    assert f"run seed2/bench: row '{WD}' seed 1 rescores to BLEU" in refused(folders)
    hyp.write_text("\n".join(lines[1:]) + "\n")
    assert f"run seed2/bench: {WD}.hyp has 59 lines, the test set 60" in refused(folders)
    (folders[1] / "references.txt").write_text("casa\n")
    assert "run seed2/bench: references.txt no longer has the sha256 its bench recorded" in refused(folders)
    report = json.loads((folders[0] / "bench.json").read_text())
    del report["settings"]["checkpoint_sha256"]
    (folders[0] / "bench.json").write_text(json.dumps(report))
    assert "run seed1/bench: its bench.json records no checkpoint_sha256" in refused(folders)
    assert "a run folder is given twice" in refused([folders[2], folders[2]])
    with pytest.raises(SystemExit) as e:
        cli.main([str(f) for f in folders] + ["--output", str(folders[0].parent / "out")])
    assert str(e.value).startswith("fairseq-wd-merge: error: run seed1/bench: its bench.json records no")


def test_provenance_checksums_are_sha256sums(tmp_path):
    """references_sha256 is what `sha256sum references.txt` prints; a CTranslate2 folder's checksum follows
    its files' bytes, not its location."""
    ct2 = tmp_path / "ct2"
    ct2.mkdir()
    (ct2 / "model.bin").write_bytes(b"weights")
    (ct2 / "shared_vocabulary.json").write_text("[]")
    fields = provenance.record(tmp_path / "out", [["a", "b"], ["c"]], [["x y", "z"]], {"ct2": [str(ct2)]})
    sha256sum = subprocess.run(["sha256sum", tmp_path / "out" / "references.txt"], capture_output=True, text=True)
    assert fields["references_sha256"] == [sha256sum.stdout.split()[0]]
    assert fields["reference_files"] == ["references.txt"]
    assert fields["sources_sha256"] == provenance.lines_sha256(["a b", "c"])
    moved = tmp_path / "elsewhere"
    ct2.rename(moved)
    assert provenance.checkpoint_sha256(str(moved)) == fields["checkpoint_sha256"]["ct2"][0]
    (moved / "model.bin").write_bytes(b"weights 2")
    assert provenance.checkpoint_sha256(str(moved)) != fields["checkpoint_sha256"]["ct2"][0]


def test_bench_writes_what_merge_reads():
    """The settings merge compares and shows are keys of the settings dict bench() writes, and bench()
    adds provenance.record's fields to them."""
    source = open(os.path.join(REPO, "fairseq_wd", "bench", "run.py")).read()
    bench_fn = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef) and n.name == "bench")
    settings = next(n.value for n in ast.walk(bench_fn) if isinstance(n, ast.Assign)
                    and getattr(n.targets[0], "id", None) == "settings")
    written = {k.value for k in settings.keys}
    read = {k for _, keys in bm.ALIKE for k in keys} - set(bm.PROVENANCE) | {"threads", "repeats"}
    assert read <= written, f"merge reads settings bench() does not write: {read - written}"
    assert re.search(r"settings\.update\(provenance\.record\(output_dir, test\.sources, references, models\)\)",
                     ast.get_source_segment(source, bench_fn)), "bench() records the checksums in its settings"
