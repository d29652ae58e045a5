"""How a `fairseq-wd-bench` report is shown: a table shaped like the WD paper's, and BLEU vs speed."""
import logging

logger = logging.getLogger(__name__)


def markdown_table(report):
    s = report["settings"]
    first = report["models"][0]["name"]
    lines = [
        f"| model | params | size ratio | weights MB | BLEU | BLEU vs {first} | sentences/s | tokens/s | speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in report["models"]:
        params = f"{m['params'] / 1e6:.2f}M" if m["params"] else "-"
        ratio = f"{m['size_ratio']:.2f}" if m["size_ratio"] else "-"
        lines.append(f"| {m['name']} | {params} | {ratio} | {m['weights_mb']:.1f} | "
                     f"{m['bleu']:.2f} | {m['bleu_vs_first']:+.2f} | {m['sentences_per_s']:.1f} | "
                     f"{m['tokens_per_s']:.0f} | {m['speedup']:.2f}x |")
    lines.append("")
    lines.append(f"{s['sentences']} sentences of '{s['gen_subset']}', beam {s['beam']}, lenpen {s['lenpen']}, "
                 f"batch {s['batch_size']}, {length_limits(s)}, {s['device']}, {s['threads']} threads; "
                 f"speed: median of {s['repeats']} interleaved runs. weights MB: a checkpoint's parameters at "
                 f"the dtype stored (no optimizer state), a CTranslate2 folder's model.bin. sacrebleu {s['sacrebleu']}")
    if s["generate_args"]:
        lines.append(f"fairseq rows only (not CTranslate2): {' '.join(s['generate_args'])}")
    return "\n".join(lines) + "\n"


def length_limits(s):
    """As fairseq-generate counts: output tokens without </s>, source tokens with it."""
    longest = f"{s['max_len_a']:g} x source + {s['max_len_b']}" if s["max_len_a"] else f"{s['max_len_b']}"
    return f"max length {longest}, min length {s['min_len']}"


def plot(report, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no %s (pip install matplotlib)", path)
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in report["models"]:
        ax.scatter(m["sentences_per_s"], m["bleu"])
        ax.annotate(m["name"], (m["sentences_per_s"], m["bleu"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("sentences/s (fairseq-generate)")
    ax.set_ylabel("BLEU (sacrebleu)")
    ax.set_title(f"beam {report['settings']['beam']}, {report['settings']['device']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
