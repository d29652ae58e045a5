"""How a `fairseq-wd-bench` report is shown: a table shaped like the WD paper's, the significance
tests, the output checks, the focus row's worst sentences, and BLEU against speed.

The tables after the first name a model `#N name`, N being its row (and its marker in bench.png)."""
import logging

from . import scoring

logger = logging.getLogger(__name__)
LABEL_OFFSETS = [(6, 5), (6, -14), (-14, 5), (-14, -14)]  # points apart, so that close markers' numbers do not overlap


def markdown_table(report):
    s = report["settings"]
    models = report["models"]
    first = models[0]["name"]
    lines = [
        f"| # | model | seeds | params | size ratio | weights MB | BLEU | BLEU vs {first} | chrF | sentences/s | "
        "tokens/s | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, m in enumerate(models, 1):
        params = f"{m['params'] / 1e6:.2f}M" if m["params"] else "-"
        ratio = f"{m['size_ratio']:.2f}" if m["size_ratio"] else "-"
        lines.append(f"| {n} | {m['name']} | {len(m['seeds'])} | {params} | {ratio} | {weights(m)} | "
                     f"{score(m['bleu'], m['bleu_sd'])} | {m['bleu_vs_first']:+.2f} | "
                     f"{score(m['chrf'], m['chrf_sd'])} | "
                     f"{m['sentences_per_s']:.1f} | {m['tokens_per_s']:.0f} | {m['speedup']:.2f}x |")
    lines.append("")
    lines.append(f"{s['sentences']} sentences of '{s['gen_subset']}', beam {s['beam']}, lenpen {s['lenpen']}, "
                 f"batch {s['batch_size']}, {length_limits(s)}, {s['device']}, fairseq rows in "
                 f"{'fp16' if {'--fp16', '--memory-efficient-fp16'} & set(s['generate_args']) else 'fp32'} "
                 f"(CTranslate2 rows: the compute type in their name), {s['threads']} threads; "
                 f"speed: median of {s['repeats']} runs of the first seed, the model order rotating between runs, "
                 f"each run's first batch decoded once untimed before its clock ({warmup(models)}). "
                 "BLEU, chrF: mean +- sd over a row's seeds. weights MB: a checkpoint's parameters at the dtype "
                 "stored, float32 unless the cell says float16 (tied embeddings once, no optimizer state), a "
                 "CTranslate2 folder's model.bin. "
                 f"sacrebleu BLEU {s['sacrebleu']}, chrF {s['sacrebleu_chrf']}")
    if s.get("timed"):
        lines.append(f"Timed: {s['timed']}.")
    if s["generate_args"]:
        lines.append(f"fairseq rows only (not CTranslate2): {' '.join(s['generate_args'])}")
    number = {m["name"]: f"#{n} {m['name']}" for n, m in enumerate(models, 1)}
    return "\n".join(lines + shortlist_section(report, number) + significance_table(report, number)
                     + checks_table(models, number) + focus_section(report, number)) + "\n"


def weights(m):
    """The weights MB cell: a fairseq checkpoint stored in half precision says so (2 bytes a parameter), so
    that it is not read as smaller than a float32 student of more parameters."""
    half = m["params"] and m.get("weights_bytes") and m["weights_bytes"] <= 2 * m["params"]
    return f"{m['weights_mb']:.1f}" + (" (float16)" if half else "")


def score(mean, sd):
    return f"{mean:.2f}" if sd is None else f"{mean:.2f} +- {sd:.2f}"


def warmup(models):
    """The first batch's one-time cost the warm-up kept off the clock: the median per decoder."""
    parts = []
    for engine, label in (("fairseq", "fairseq-generate"), ("ctranslate2", "CTranslate2")):
        costs = sorted(r["first_batch_cost_s"] for m in models if m.get("engine", "fairseq") == engine
                       for r in m["runs"] if r["first_batch_cost_s"] is not None)
        if costs:
            parts.append(f"{label} {costs[len(costs) // 2]:.3f}s")
    return f"the one-time cost it kept off, median: {', '.join(parts)}" if parts else "no warm-up was possible"


def length_limits(s):
    """As fairseq-generate counts: output tokens without </s>, source tokens with it."""
    longest = f"{s['max_len_a']:g} x source + {s['max_len_b']}" if s["max_len_a"] else f"{s['max_len_b']}"
    return f"max length {longest}, min length {s['min_len']}"


def shortlist_section(report, number):
    """Per --shortlist: its candidate-set size and coverage, and per model what it costs and gains."""
    lines = []
    first = number[report["models"][0]["name"]]
    for s in report.get("shortlists", []):
        teacher = f"{number[report['models'][0]['name'] + s['row_suffix']]}"
        lines += ["", f"Shortlist {s['path']} (rows `NAME{s['row_suffix']}`: fairseq-generate --task distillation "
                      f"--shortlist, CTranslate2 use_vmap): at batch {s['batch_size']} a batch's candidate set holds "
                      f"on average {s['candidates_mean']:.0f} of the {s['vocab_size']} target tokens "
                      f"({s['candidates_share']:.1%}; {s['batches']} batches), and keeps {s['coverage']:.2%} of the "
                      f"'{report['settings']['gen_subset']}' reference tokens ({s['reference_tokens_covered']}/"
                      f"{s['reference_tokens']}, the data-bin's targets), {s['references_covered']:.1%} of the "
                      "references entirely. Speed-ups of the shortlist row:", "",
                  f"| model | BLEU with - without | chrF with - without | speed-up vs itself without | "
                  f"vs {teacher} | vs {first} |", "|---|---|---|---|---|---|"]
        for r in s["rows"]:
            against = "-" if r["speedup_vs_teacher_shortlist"] is None else f"{r['speedup_vs_teacher_shortlist']:.2f}x"
            lines.append(f"| {number[r['row']]} | {r['bleu_cost']:+.2f} | {r['chrf_cost']:+.2f} | "
                         f"{r['speedup_vs_plain']:.2f}x | {against} | {r['speedup_vs_teacher']:.2f}x |")
    return lines


def significance_table(report, number):
    """The paired tests, a row per (model, baseline): one seed pair shows its difference, the 95% interval
    of the difference and p; several show the differences' mean +- sd over the pairs and each pair's
    difference and p, in seed-pair order (an interval belongs to one pair's resamples: bench.json's per_seed)."""
    tests = report["significance"]
    if not tests:
        return []
    lines = ["", f"Paired bootstrap resampling ({report['settings']['bootstrap_samples']} resamples of the test "
                 "sentences, drawn once and shared by both systems; p as sacrebleu --paired-bs defines and prints "
                 "it): the row minus its baseline, and the 95% percentile interval of that difference over the "
                 "resamples. With seeds (seed i against seed i): the mean +- sd of the differences over the seed "
                 "pairs, then each pair's difference and p; each pair's interval is in bench.json.", "",
             "| model | against | seed pairs | BLEU difference | BLEU 95% interval | BLEU p | chrF difference | "
             "chrF 95% interval | chrF p |", "|---|---|---|---|---|---|---|---|---|"]
    for t in tests:
        cells = []
        for metric in ("bleu", "chrf"):
            cells += difference_cells(t[metric])
        pair = f"| {number[t['model']]} | {number[t['baseline']]} | {len(t['seed_pairs'])}"
        lines.append(f"{pair} | {' | '.join(cells)} |")
    return lines


def difference_cells(m):
    """[difference, interval, p] of one metric of a test (scoring.summarize)."""
    if len(m["per_seed"]) == 1:
        low, high = m["interval"]
        return [f"{m['difference']:+.2f}", f"[{low:+.2f}, {high:+.2f}]", f"{m['p']:.4f}"]
    per_pair = ", ".join(f"{s['difference']:+.2f}" for s in m["per_seed"])
    return [f"{m['difference']:+.2f} +- {m['sd']:.2f} ({per_pair})", "per pair: bench.json",
            ", ".join(f"{s['p']:.4f}" for s in m["per_seed"])]


def checks_table(models, number):
    lines = ["", f"Outputs (first seed): stopped at the length limit (as many tokens as the batch's limit allowed, "
                 f"</s> not counted), looping (a word {scoring.LOOP_NGRAM}-gram {scoring.LOOP_COUNT}+ times), "
                 f"copying the source (sentence chrF against the source >= {scoring.COPY_CHRF}); length ratio: "
                 "hypothesis / reference words, corpus-level, as BLEU's brevity penalty.", "",
             "| model | at length limit | loops | copies source | length ratio |", "|---|---|---|---|---|"]
    for m in models:
        c = m["checks"]
        lines.append(f"| {number[m['name']]} | {c['at_length_limit']:.1%} | {c['loops']:.1%} | "
                     f"{c['copies_source']:.1%} | {c['length_ratio']:.3f} |")
    return lines


def focus_section(report, number):
    focus = report["focus"]
    if focus["model"] == focus["baseline"]:
        return []
    a, b = number[focus["baseline"]], number[focus["model"]]
    lines = ["", f"Where {b} loses most against {a} (sentence chrF; all sentences in sentences.tsv):", ""]
    if not focus["sentences"]:
        return lines + ["none: it is never below."]
    lines += [f"| id | chrF {a} | chrF {b} | source | reference | {a} | {b} |", "|---|---|---|---|---|---|---|"]
    for x in focus["sentences"]:
        texts = " | ".join(cell(x[k]) for k in ("source", "reference", "baseline", "model"))
        lines.append(f"| {x['id']} | {x['chrf_baseline']:.1f} | {x['chrf_model']:.1f} | {texts} |")
    return lines


def cell(text):
    return text.replace("|", "\\|") or " "


def pyplot(path):
    """matplotlib.pyplot drawing to files (Agg), its font search kept out of fairseq's DEBUG log; None,
    with a warning naming `path`, where matplotlib is not installed."""
    try:
        import matplotlib

        logging.getLogger("matplotlib").setLevel(logging.WARNING)  # fairseq leaves the root logger at DEBUG
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no %s (pip install matplotlib)", path)
        return None
    return plt


def plot(report, path):
    """bench.png (`figure`), or None without matplotlib."""
    plt = pyplot(path)
    if plt is None:
        return None
    fig = figure(report, plt)
    fig.savefig(path, dpi=120, bbox_inches="tight")  # the canvas grows to hold the legend, not the axes shrink
    plt.close(fig)
    return path


def figure(report, plt):
    """BLEU against sentences/s: numbered markers (the table's #; squares for CTranslate2), the full
    names in a legend below the axes, error bars of the seeds' BLEU sd."""
    models = report["models"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n, m in enumerate(models, 1):
        marker = "s" if m.get("engine") == "ctranslate2" else "o"
        ax.errorbar(m["sentences_per_s"], m["bleu"], yerr=m.get("bleu_sd") or None, fmt=marker, markersize=7,
                    capsize=3, label=f"{n}  {m['name']}")
        ax.annotate(str(n), (m["sentences_per_s"], m["bleu"]), xytext=LABEL_OFFSETS[(n - 1) % 4],
                    textcoords="offset points", fontsize=10, fontweight="bold")
    ax.set_xlim(left=0, right=1.12 * max(m["sentences_per_s"] for m in models))
    ax.margins(y=0.15)
    ax.grid(alpha=0.3)
    ax.set_xlabel("sentences/s (median of the timed runs)")
    ax.set_ylabel("BLEU (sacrebleu; bars: sd over seeds)")
    s = report["settings"]
    ax.set_title(f"beam {s['beam']}, batch {s['batch_size']}, {s['device']}, {s['threads']} threads", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=1, fontsize=8, frameon=False,
              title="circles: fairseq-generate, squares: CTranslate2", title_fontsize=8)
    return fig


def pairs_table(report):
    """bench.md of a multilingual bench: the average over pairs, then each pair's own bench.md."""
    pairs = list(report["pairs"])
    first = report["average"][0]["name"]
    lines = [f"## Average over the {len(pairs)} pairs ({', '.join(pairs)})", "",
             f"| # | model | BLEU | BLEU vs {first} | chrF | chrF vs {first} | speed-up |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {n} | {m['name']} | {m['bleu']:.2f} | {m['bleu_vs_first']:+.2f} | {m['chrf']:.2f} | "
              f"{m['chrf_vs_first']:+.2f} | {m['speedup']:.2f}x |" for n, m in enumerate(report["average"], 1)]
    lines += ["", "A pair's BLEU and chrF are its seeds' mean; the average weighs every pair alike. Significance, "
              "checks and sentences: each pair's section below and its folder.", ""]
    for pair, r in report["pairs"].items():
        lines += [f"## {pair}", "", markdown_table(r)]
    return "\n".join(lines)
