"""Results kept in the repository (docs/results/EXPERIMENT/): their merged tables are what fairseq-wd-merge
makes of the kept runs alone, and nothing in them names a path of the machine they ran on."""
import glob
import importlib.util
import json
import os

import pytest

from fairseq_wd.bench import merge, results

from utils import REPO, run

EXPERIMENTS = sorted(os.path.dirname(p) for p in glob.glob(os.path.join(REPO, "docs", "results", "*", "merged.json")))


def test_results_are_kept():
    assert EXPERIMENTS, "docs/results/ holds no merged experiment"


@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=os.path.basename)
def test_a_kept_experiment_merges_again_to_its_table(experiment, tmp_path):
    with open(os.path.join(experiment, "merged.json")) as f:
        labels = [r["label"] for r in json.load(f)["runs"]]
    runs = [os.path.join(experiment, "runs", label) for label in labels]
    run("fairseq-wd-merge", *runs, "--output", tmp_path)
    for name in ("merged.md", "merged.json"):
        with open(os.path.join(experiment, name)) as kept, open(tmp_path / name) as made:
            assert made.read() == kept.read(), f"{name} of {os.path.basename(experiment)} is not what its runs give"


def test_kept_results_name_no_machine_path():
    texts = [p for e in EXPERIMENTS for p in glob.glob(os.path.join(e, "**", "*"), recursive=True)
             if p.endswith((".json", ".md"))]
    assert texts
    for path in texts:
        with open(path, encoding="utf-8") as f:
            found = results.ABSOLUTE.search(f.read())
        assert not found, f"{os.path.relpath(path, REPO)} names {found.group(0)}"


def test_keep_cuts_machine_paths_and_keeps_what_merge_reads(tmp_path):
    work = tmp_path / "work"
    bench = work / "bench"
    bench.mkdir(parents=True)
    (bench / "bench.json").write_text(json.dumps({"settings": {"data": str(work / "data-bin"),
                                                               "shortlists": ["/elsewhere/lists/vmap.txt"]}}))
    (bench / "bench.md").write_text(f"decoded {work}/data-bin with /opt/x/vmap.txt\n")
    (bench / "teacher.hyp").write_text("a b\n")
    (bench / "references.txt").write_text("a b\n")
    (bench / "bench.png").write_bytes(b"png")
    (bench / "curves.json").write_text(json.dumps({"curves": {"TINY WD": [{"update": 250, "bleu": 3.5}]}}))
    results.write_run(bench, ["fairseq-wd-pipeline", "--work-dir", str(work), "--tsv", "/home/me/corpus.tsv"], work)
    kept = results.keep(bench, tmp_path / "kept")
    assert sorted(os.listdir(kept)) == ["bench.json", "bench.md", "curves.json", "references.txt", "run.json",
                                        "teacher.hyp"]
    assert json.load(open(kept / "bench.json"))["settings"] == {"data": "WORK/data-bin", "shortlists": ["vmap.txt"]}
    assert (kept / "bench.md").read_text() == "decoded WORK/data-bin with vmap.txt\n"
    record = json.load(open(kept / "run.json"))
    assert record["command"] == ["fairseq-wd-pipeline", "--work-dir", "WORK", "--tsv", "corpus.tsv"]
    assert record["machine"]["cores"] == os.cpu_count() and record["fairseq_wd"]
    with pytest.raises(FileExistsError):
        results.keep(bench, kept)


def kept(experiment):
    """An experiment's merged.json: its rows by name, and its significance tests by (model, baseline)."""
    with open(os.path.join(REPO, "docs", "results", experiment, "merged.json")) as f:
        merged = json.load(f)
    return ({m["name"]: m for m in merged["models"]},
            {(s["model"], s["baseline"]): s["bleu"] for s in merged["significance"]})


def test_the_readme_results_are_the_kept_ones():
    """The README's results at a glance come from the kept merged.json files: cpu-en-ro's table (each row's
    BLEU and chrF mean +- sd over seeds, its speed-up) with WD against KD and the teacher, and the cpu-en-de
    and demo summaries."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        glance = f.read().split("## Results at a glance")[1].split("\n## ")[0]
    kd, wd = "TINY KD (orig+teacher-out, CE)", "TINY WD (orig+teacher-out, generator then CE)"

    def spread(row, metric):
        return f"{row[metric]:.2f}" + (f" +- {row[metric + '_sd']:.2f}" if row[metric + "_sd"] is not None else "")

    def speedup(row):
        return f"{row['speed']['speedup']:.2f}x"

    rows, tests = kept("cpu-en-ro")
    for label, name in (("teacher (3-3 d128)", "teacher"), ("TINY KD baseline", kd), ("TINY WD", wd)):
        line = next(line for line in glance.splitlines() if line.startswith(f"| {label} |"))
        assert spread(rows[name], "bleu") in line and spread(rows[name], "chrf") in line, line
        assert speedup(rows[name]) in line, line
    assert f"(CTranslate2 int8: {speedup(rows[f'{wd}, CTranslate2 int8'])})" in glance
    over_kd, under_teacher = tests[(wd, kd)], tests[(wd, "teacher")]
    p = max(s["p"] for s in over_kd["per_seed"])
    assert (f"WD minus KD, seed against seed: {over_kd['difference']:+.2f} +- {over_kd['sd']:.2f} BLEU "
            f"(p = {p:.3f} in each seed") in glance
    assert f"WD stays {-under_teacher['difference']:.2f} +- {under_teacher['sd']:.2f} BLEU below the teacher" in glance

    rows, tests = kept("cpu-en-de")
    over_kd, over_teacher = tests[(wd, kd)]["per_seed"][0], tests[(wd, "teacher")]["per_seed"][0]
    assert (f"teacher {spread(rows['teacher'], 'bleu')} BLEU, KD {spread(rows[kd], 'bleu')}, WD "
            f"{spread(rows[wd], 'bleu')}; WD minus KD {over_kd['difference']:+.2f} (p = {over_kd['p']:.3f}), WD minus "
            f"the teacher {over_teacher['difference']:+.2f} (p = {over_teacher['p']:.3f})") in " ".join(glance.split())

    rows, tests = kept("demo")
    p = max(s["p"] for s in tests[(wd, kd)]["per_seed"])
    summary = " ".join(glance.split("`make demo`")[1].split())
    assert (f"teacher {spread(rows['teacher'], 'bleu')} BLEU, KD {spread(rows[kd], 'bleu')}, WD "
            f"{spread(rows[wd], 'bleu')}; WD minus KD {tests[(wd, kd)]['difference']:+.2f} +- "
            f"{tests[(wd, kd)]['sd']:.2f} (p = {p:.3f} in each seed)") in summary, summary
    assert (f"WD decodes {speedup(rows[wd])} faster than the teacher (CTranslate2: "
            f"{speedup(rows[f'{wd}, CTranslate2 float32'])})") in summary


def test_bleu_by_length_splits_each_seeds_difference():
    """examples/benchmarks/bleu_by_length.py on the kept cpu-en-ro runs: length groups that hold every test
    sentence once, shortest first; a row per seed whose last cell is that seed pair's difference in
    merged.json; and the table in the experiment's README is its output."""
    spec = importlib.util.spec_from_file_location(
        "bleu_by_length", os.path.join(REPO, "examples", "benchmarks", "bleu_by_length.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    experiment = os.path.join(REPO, "docs", "results", "cpu-en-ro")
    _, tests = kept("cpu-en-ro")
    wd, kd = "TINY WD (orig+teacher-out, generator then CE)", "TINY KD (orig+teacher-out, CE)"
    folders = [os.path.join(experiment, "runs", label) for label in ("seed1", "seed2", "seed3")]
    runs = [merge.load_run(f, label) for f, label in zip(folders, merge.labels(folders))]
    references = runs[0].references[0]
    groups = script.length_groups(references, 3)
    assert sorted(i for g in groups for i in g) == list(range(len(references)))
    lengths = [[len(references[i].split()) for i in g] for g in groups]
    assert max(lengths[0]) <= min(lengths[1]) and max(lengths[1]) <= min(lengths[2])

    def cells(table):
        return [line.strip("| ").split(" | ") for line in table.splitlines()[4:]]

    over_kd = cells(script.bucket_table(runs, wd, kd, 3))
    assert [c[0] for c in over_kd] == ["seed1", "seed2", "seed3"]
    assert [c[-1] for c in over_kd] == [f"{s['difference']:+.2f}" for s in tests[(wd, kd)]["per_seed"]]
    bleu, chrf = (cells(script.bucket_table(runs, wd, "teacher", 3, metric)) for metric in ("bleu", "chrf"))
    with open(os.path.join(experiment, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    for b, c in zip(bleu, chrf):
        assert "| " + " | ".join([*b, *c[1:]]) + " |" in readme, b[0]
