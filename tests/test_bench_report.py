"""bench.md and bench.png from a report: the tables after the first name rows `#N name` (bench.md is
copied into results.md, where `| NAME` counts rows), and the plot keeps long names out of its axes."""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fairseq_wd.bench import report as bench_report  # noqa: E402
from fairseq_wd.bench.report import figure, markdown_table, plot  # noqa: E402

NAMES = ["teacher", "TINY KD (orig+teacher-out, CE)", "TINY WD (orig+teacher-out, generator then CE)",
         "TINY WD (orig+teacher-out, generator then CE), CTranslate2 int8"]


def report():
    checks = {"at_length_limit": 0.02, "loops": 0.01, "copies_source": 0.0, "length_ratio": 0.97}
    models = [{"name": name, "engine": "ctranslate2" if "CTranslate2" in name else "fairseq",
               "params": None if "CTranslate2" in name else 1e6 * (4 - k), "size_ratio": None if k == 3 else 1 - k / 4,
               "weights_mb": 10.0 - k, "bleu": 30 - k, "bleu_sd": None if k in (0, 3) else 0.4, "chrf": 55 - k,
               "chrf_sd": None if k in (0, 3) else 0.3, "bleu_vs_first": -k, "sentences_per_s": 20.0 * (k + 1),
               "tokens_per_s": 500.0 * (k + 1), "speedup": k + 1.0, "seeds": [{}] * (1 if k in (0, 3) else 3),
               "runs": [{"first_batch_cost_s": 0.5}], "checks": checks} for k, name in enumerate(NAMES)]
    per_seed = [{"difference": d, "interval": [d - 0.9, d + 0.8], "p": p}
                for d, p in ((-1.2, 0.003), (-1.8, 0.0005), (-1.5, 0.0121))]
    test = {"difference": -1.5, "sd": 0.3, "p": 0.0121, "per_seed": per_seed}
    one = {"difference": -0.4, "sd": None, "p": 0.2, "interval": [-1.1, 0.35], "per_seed": per_seed[:1]}
    return {"settings": {"sentences": 500, "gen_subset": "test", "beam": 6, "lenpen": 1.0, "batch_size": 64,
                         "max_len_a": 1.5, "max_len_b": 10, "min_len": 1, "device": "cpu", "threads": 2, "repeats": 3,
                         "sacrebleu": "tok:13a", "sacrebleu_chrf": "nc:6", "generate_args": [], "bootstrap_samples": 1000},
            "models": models,
            "significance": [{"model": NAMES[2], "baseline": NAMES[1], "seed_pairs": [[1, 1], [2, 2], [3, 3]],
                              "bleu": test, "chrf": test},
                             {"model": NAMES[3], "baseline": NAMES[0], "seed_pairs": [[1, 1]], "bleu": one,
                              "chrf": one}],
            "focus": {"model": NAMES[2], "baseline": NAMES[0],
                      "sentences": [{"id": 7, "source": "a | b", "reference": "r", "baseline": "x", "model": "",
                                     "chrf_baseline": 80.0, "chrf_model": 10.0}]}}


def test_tables_name_rows_by_number():
    md = markdown_table(report())
    assert md.count("| TINY") == 3, "only the first table's rows start with a name"
    assert f"| 3 | {NAMES[2]} | 3 | 2.00M | 0.50 | 8.0 | 28.00 +- 0.40 | -2.00 | 53.00 +- 0.30 |" in md
    several = "-1.50 +- 0.30 (-1.20, -1.80, -1.50) | per pair: bench.json | 0.0030, 0.0005, 0.0121"
    assert f"| #3 {NAMES[2]} | #2 {NAMES[1]} | 3 | {several} | {several} |" in md, "each seed pair's p, no one interval"
    assert f"| #4 {NAMES[3]} | #1 {NAMES[0]} | 1 | -0.40 | [-1.10, +0.35] | 0.2000 |" in md
    assert f"| #4 {NAMES[3]} | 2.0% | 1.0% | 0.0% | 0.970 |" in md
    assert "| 7 | 80.0 | 10.0 | a \\| b | r | x |   |" in md, "a | inside a sentence is escaped"
    assert "one-time cost it kept off, median: fairseq-generate 0.500s, CTranslate2 0.500s" in md
    half = report()
    half["models"][0]["weights_bytes"] = 2 * half["models"][0]["params"]  # a teacher stored in float16
    half["models"][1]["weights_bytes"] = 4 * half["models"][1]["params"]
    rows = markdown_table(half).splitlines()
    assert "| 4.00M | 1.00 | 10.0 (float16) |" in rows[2] and "| 3.00M | 0.75 | 9.0 |" in rows[3], \
        "a half-precision checkpoint's size says its dtype"


def test_plot_numbers_the_markers_and_names_them_below(tmp_path):
    """Numbers at the markers, full names only in the legend below, error bars where seeds give an sd,
    and axes spanning the figure's width. bench.png is left in tmp_path to look at."""
    fig = figure(report(), plt)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["1", "2", "3", "4"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"{n}  {name}" for n, name in enumerate(NAMES, 1)]
    assert ax.get_position().width > 0.7
    bars = [c for c in ax.containers if c.has_yerr]
    assert len(bars) == 2, "rows 2 and 3 have seeds"
    assert ax.get_xlim()[0] == 0 and ax.get_xlim()[1] > 80
    plt.close(fig)
    assert plot(report(), tmp_path / "bench.png") and os.path.getsize(tmp_path / "bench.png") > 10_000


def test_shortlist_figures_and_section():
    """Each shortlist row against its plain row (BLEU cost, speed-up), a student's also against the teacher
    with the shortlist (what distillation gains) and without it (what a user gains in all)."""
    from fairseq_wd.bench import shortlist_rows
    from fairseq_wd.shortlist.vmap import Coverage

    rows = [{"name": n, "engine": "fairseq", "bleu": b, "chrf": c, "sentences_per_s": v, "speedup": v / 10}
            for n, b, c, v in (("teacher", 30.0, 55.0, 10.0), ("teacher + shortlist", 29.5, 55.1, 12.5),
                               ("TINY", 28.0, 53.0, 25.0), ("TINY + shortlist", 27.9, 52.8, 40.0))]
    spec = shortlist_rows.Spec(None, "vmap.txt", " + shortlist", Coverage(1000, 995, 50, 45, 1918.4, 4008, 8))
    plain_of = {"teacher + shortlist": ("teacher", spec), "TINY + shortlist": ("TINY", spec)}
    shortlist, = shortlist_rows.figures(rows, [spec], plain_of, 64)
    assert [shortlist[k] for k in ("candidates_share", "coverage", "references_covered")] == [0.4786, 0.995, 0.9]
    teacher, tiny = shortlist["rows"]
    speedups = ["speedup_vs_plain", "speedup_vs_teacher_shortlist", "speedup_vs_teacher"]
    assert [teacher[k] for k in ["bleu_cost", *speedups]] == [-0.5, 1.25, None, 1.25]
    assert [tiny[k] for k in ["chrf_cost", *speedups]] == [-0.2, 1.6, 3.2, 4.0]
    number = {r["name"]: f"#{n} {r['name']}" for n, r in enumerate(rows, 1)}
    md = "\n".join(bench_report.shortlist_section({"models": rows, "shortlists": [shortlist],
                                                   "settings": {"gen_subset": "test"}}, number))
    assert "holds on average 1918 of the 4008 target tokens (47.9%; 8 batches), and keeps 99.50%" in md
    assert "| #4 TINY + shortlist | -0.10 | -0.20 | 1.60x | 3.20x | 4.00x |" in md
    assert "| #2 teacher + shortlist | -0.50 | +0.10 | 1.25x | - | 1.25x |" in md
