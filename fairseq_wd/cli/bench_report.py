"""How a `fairseq-wd-bench` report is shown: a table shaped like the WD paper's, and BLEU vs speed."""
import logging

logger = logging.getLogger(__name__)


def markdown_table(report):
    s = report["settings"]
    first = report["models"][0]["name"]
    lines = [
        f"| model | params | size ratio | file MB | BLEU | BLEU vs {first} | sentences/s | tokens/s | speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in report["models"]:
        params = f"{m['params'] / 1e6:.2f}M" if m["params"] else "-"
        ratio = f"{m['size_ratio']:.2f}" if m["size_ratio"] else "-"
        lines.append(f"| {m['name']} | {params} | {ratio} | {m['file_mb']:.1f} | "
                     f"{m['bleu']:.2f} | {m['bleu_vs_first']:+.2f} | {m['sentences_per_s']:.1f} | "
                     f"{m['tokens_per_s']:.0f} | {m['speedup']:.2f}x |")
    lines.append("")
    lines.append(f"{s['sentences']} sentences of '{s['gen_subset']}', beam {s['beam']}, lenpen {s['lenpen']}, "
                 f"batch {s['batch_size']}, {s['device']}, {s['threads']} threads; speed: median of "
                 f"{s['repeats']} interleaved fairseq-generate runs. sacrebleu {s['sacrebleu']}")
    return "\n".join(lines) + "\n"


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
