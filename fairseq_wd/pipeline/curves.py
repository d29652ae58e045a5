"""Learning curves from fairseq-train's own validation lines: valid BLEU (`--eval-bleu`) and loss
against updates, for the BLEU-vs-updates plot, the best validation and whether a training converged."""
import re

from ..bench.report import pyplot

VALID = re.compile(r"valid on 'valid' subset \| (.*)$")


def read_validations(log_path, offset=0):
    """[{'update', 'loss', 'bleu'?}] in update order, one per validation (a resumed run's repeats dropped);
    `offset` is added to the updates (WD phase 2 continues phase 1's count)."""
    points = {}
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = VALID.search(line)
            if not m:
                continue
            fields = dict(part.strip().split(" ", 1) for part in m.group(1).split("|") if " " in part.strip())
            if "num_updates" not in fields or "loss" not in fields:
                continue
            update = int(fields["num_updates"]) + offset
            point = {"update": update, "loss": float(fields["loss"])}
            if "bleu" in fields:
                point["bleu"] = float(fields["bleu"])
            points.setdefault(update, point)
    return [points[u] for u in sorted(points)]


def best(points, metric="loss"):
    """The validation that checkpoint_best.pt holds by `metric` ("loss": lowest; "bleu": highest): the
    latest of equals, as fairseq's save_checkpoint replaces the best on a tie; None without such points."""
    points = [p for p in points if metric in p]
    if not points:
        return None
    sign = -1 if metric == "bleu" else 1
    return min(points, key=lambda p: (sign * p[metric], -p["update"]))


def convergence(points, window, metric="loss"):
    """How a training ended: the update of its best validation by `metric`, and whether it then failed to
    improve for at least `window` updates (fairseq's --patience counts validations; this counts updates)."""
    top = best(points, metric)
    if top is None:
        return {"best_update": None, "last_update": None, "converged": False}
    last = points[-1]["update"]
    return {"best_update": top["update"], f"best_{metric}": top[metric], "last_update": last,
            "converged": last - top["update"] >= window}


def plot(curves, path, reference=None):
    """Valid BLEU against updates, one line per model; `reference`: {label: BLEU} drawn as horizontal lines."""
    plt = pyplot(path)
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colours, styles = {}, ["-", "--", ":", "-."]
    for name, points in curves.items():
        model, _, seed = name.partition(", seed ")  # every seed of a model in its colour, one line style each
        points = [p for p in points if "bleu" in p]
        if points:
            line, = ax.plot([p["update"] for p in points], [p["bleu"] for p in points], marker="o", markersize=2,
                            linestyle=styles[len([n for n in curves if n.startswith(model + ", seed ")
                                                  and n < name]) % 4] if seed else "-",
                            color=colours.get(model), label=name)
            colours.setdefault(model, line.get_color())
    for i, (label, bleu) in enumerate((reference or {}).items()):
        ax.axhline(bleu, linestyle="--" if i == 0 else ":", color="gray", linewidth=1, label=label)
    ax.set_xlabel("updates")
    ax.set_ylabel("valid BLEU (fairseq --eval-bleu)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
