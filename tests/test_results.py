"""Results kept in the repository (docs/results/EXPERIMENT/): their merged tables are what fairseq-wd-merge
makes of the kept runs alone, and nothing in them names a path of the machine they ran on."""
import glob
import json
import os

import pytest

from fairseq_wd.bench import results

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
    results.write_run(bench, ["fairseq-wd-pipeline", "--work-dir", str(work), "--tsv", "/home/me/corpus.tsv"], work)
    kept = results.keep(bench, tmp_path / "kept")
    assert sorted(os.listdir(kept)) == ["bench.json", "bench.md", "references.txt", "run.json", "teacher.hyp"]
    assert json.load(open(kept / "bench.json"))["settings"] == {"data": "WORK/data-bin", "shortlists": ["vmap.txt"]}
    assert (kept / "bench.md").read_text() == "decoded WORK/data-bin with vmap.txt\n"
    record = json.load(open(kept / "run.json"))
    assert record["command"] == ["fairseq-wd-pipeline", "--work-dir", "WORK", "--tsv", "corpus.tsv"]
    assert record["machine"]["cores"] == os.cpu_count() and record["fairseq_wd"]
    with pytest.raises(FileExistsError):
        results.keep(bench, kept)


def test_the_readme_results_are_the_kept_ones():
    """The README's results at a glance come from docs/results/demo/merged.json: each row's BLEU (mean +- sd
    over seeds) and speed-up, and WD minus KD with its spread."""
    with open(os.path.join(REPO, "docs", "results", "demo", "merged.json")) as f:
        merged = json.load(f)
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        glance = f.read().split("## Results at a glance")[1].split("\n## ")[0]
    rows = {m["name"]: m for m in merged["models"]}

    def bleu(name):
        m = rows[name]
        return f"{m['bleu']:.2f}" + (f" +- {m['bleu_sd']:.2f}" if m["bleu_sd"] is not None else "")

    kd, wd = "TINY KD (orig+teacher-out, CE)", "TINY WD (orig+teacher-out, generator then CE)"
    for label, name in (("teacher (shipped, 3-3 d128)", "teacher"), ("TINY KD baseline", kd), ("TINY WD", wd)):
        line = next(line for line in glance.splitlines() if line.startswith(f"| {label} |"))
        assert bleu(name) in line and f"{rows[name]['speed']['speedup']:.2f}x" in line, line
    ct2 = rows[f"{wd}, CTranslate2 float32"]["speed"]["speedup"]
    assert f"(CTranslate2: {ct2:.2f}x)" in glance
    test = next(s["bleu"] for s in merged["significance"] if (s["model"], s["baseline"]) == (wd, kd))
    p = max(s["p"] for s in test["per_seed"])
    assert f"WD minus KD: {test['difference']:+.2f} +- {test['sd']:.2f} BLEU (p = {p:.3f} in each seed" in glance
