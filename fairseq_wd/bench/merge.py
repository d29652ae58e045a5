"""Separate runs' bench outputs merged into one table (`fairseq-wd-merge`).

A run is one `fairseq-wd-bench --output-dir` folder (bench.json, NAME.hyp, NAME.seedK.hyp and the
references the bench stored), typically one training seed, possibly benched on another machine. Merging
needs those files only, never a checkpoint: every hypothesis is rescored against the stored references.

Guarantees of `merge`:
- it refuses, naming the runs and what differs, unless every run has the same test set (sentence count,
  split, pair and sources checksum), references (checksums), teacher (the checkpoint checksum of the
  teacher row) and bench settings (beam, lenpen, batch size, length limits, device, fairseq-generate
  options, sacrebleu signatures); and unless this machine's sacrebleu rescores every stored hypothesis
  file to the BLEU and chrF its bench recorded;
- a row's seeds are its distinct checkpoints over all runs (by checksum, in the order the runs are
  given): the teacher, the same checkpoint in every run, counts once;
- BLEU and chrF: mean and sd over a row's seeds; speed: the first run's, as it timed it;
- each pair the runs tested (every row against the first row, and the bench's --compare pairs) is tested
  seed pair by seed pair within each run (scoring.seed_pairs), a checkpoint pair once, each with
  evaluation's paired bootstrap; per pair of rows the differences' mean and sd and every seed pair's p;
- nothing in the merged output names a path of a machine: runs are named by the shortest tail of their
  folder paths that tells them apart, models by name and checksum.
"""
import dataclasses
import json
import os
import statistics

from . import provenance, scoring

PROVENANCE = ("sources_sha256", "reference_files", "references_sha256", "checkpoint_sha256")
# What every run must share: (what it is called in a refusal, the bench.json settings that make it up)
ALIKE = (("test set", ("sentences", "gen_subset", "pair", "sources_sha256")),
         ("references", ("references_sha256",)),
         ("bench settings", ("beam", "lenpen", "batch_size", "max_len_a", "max_len_b", "min_len", "device",
                             "generate_args", "sacrebleu", "sacrebleu_chrf")))
SUMMARY = 12  # hex digits of a checksum shown in merged.md


class MergeError(ValueError):
    pass


@dataclasses.dataclass
class Run:
    """One bench output. `hypotheses`: {row: [lines of each seed]}; `checksums`: {row: [each seed's
    checkpoint sha256]}."""
    label: str
    settings: dict
    rows: list
    hypotheses: dict
    checksums: dict
    references: list
    tests: list  # the (row, baseline) pairs its bench tested


def labels(folders):
    """Each folder's shortest path tail (1, 2, ... trailing parts) that differs from every other's; never an
    absolute path. Folders given twice are refused (a seed would count twice)."""
    parts = [os.path.normpath(os.path.abspath(f)).split(os.sep)[1:] for f in folders]
    if len({tuple(p) for p in parts}) < len(parts):
        raise MergeError("a run folder is given twice: give each run once")
    for k in range(1, max(len(p) for p in parts) + 1):
        tails = ["/".join(p[-k:]) for p in parts]
        if len(set(tails)) == len(tails):
            return tails
    return tails


def load_run(folder, label):
    """A bench output as a Run, its files checked against what its bench.json records."""
    path = os.path.join(folder, "bench.json")
    if not os.path.isfile(path):
        raise MergeError(f"run {label}: no bench.json in it; give the folder fairseq-wd-bench --output-dir wrote")
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    if "pairs" in report:
        raise MergeError(f"run {label} is a multilingual bench ({', '.join(report['pairs'])}): merge one pair's "
                         "folders (RUN/SRC-TGT) at a time")
    settings = report["settings"]
    missing = [k for k in PROVENANCE if k not in settings]
    if missing:
        raise MergeError(f"run {label}: its bench.json records no {', '.join(missing)} (benched before "
                         "fairseq-wd-bench recorded checksums): bench that run again to merge it")
    references = []
    for name, digest in zip(settings["reference_files"], settings["references_sha256"]):
        file = os.path.join(folder, name)
        if not os.path.isfile(file):
            raise MergeError(f"run {label}: {name} is missing; the bench stored its references there")
        with open(file, encoding="utf-8") as f:
            lines = f.read().splitlines()
        if provenance.lines_sha256(lines) != digest:
            raise MergeError(f"run {label}: {name} no longer has the sha256 its bench recorded; restore it")
        references.append(lines)
    hypotheses = {}
    for row in report["models"]:
        name = row["name"]
        hypotheses[name] = []
        for k in range(1, len(row["seeds"]) + 1):
            file = os.path.join(folder, f"{name}.hyp" if k == 1 else f"{name}.seed{k}.hyp")
            if not os.path.isfile(file):
                raise MergeError(f"run {label}: {os.path.basename(file)} is missing (row {name!r}, seed {k})")
            with open(file, encoding="utf-8") as f:
                lines = f.read().splitlines()
            if len(lines) != settings["sentences"]:
                raise MergeError(f"run {label}: {os.path.basename(file)} has {len(lines)} lines, the test set "
                                 f"{settings['sentences']}")
            hypotheses[name].append(lines)
    return Run(label, settings, report["models"], hypotheses, settings["checkpoint_sha256"], references,
               [(t["model"], t["baseline"]) for t in report["significance"]])


def show(value):
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:SUMMARY]
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return repr(value)


def differences(runs, keys):
    """'key: A has x; B, C have y' for each key on which the runs do not all agree."""
    out = []
    for key in keys:
        groups = {}
        for run in runs:
            groups.setdefault(json.dumps(run.settings.get(key), sort_keys=True), []).append(run)
        if len(groups) > 1:
            out.append(f"{key}: " + "; ".join(
                f"{', '.join(r.label for r in group)} {'has' if len(group) == 1 else 'have'} "
                f"{show(group[0].settings.get(key))}" for group in groups.values()))
    return out


def check_alike(runs, teacher):
    """Refuses (MergeError naming every difference) runs that do not share test set, references, teacher
    and bench settings."""
    problems = []
    for what, keys in ALIKE:
        found = differences(runs, keys)
        if found:
            problems.append(f"the runs differ in their {what}: " + "; ".join(found))
    lacking = [r.label for r in runs if teacher not in r.checksums]
    if lacking:
        problems.append(f"the teacher row {teacher!r} is missing from {', '.join(lacking)} (name the teacher row "
                        "with --teacher)")
    else:
        groups = {}
        for run in runs:
            groups.setdefault(tuple(run.checksums[teacher]), []).append(run.label)
        if len(groups) > 1:
            problems.append(f"the runs differ in their teacher (row {teacher!r}, checkpoint sha256): " + "; ".join(
                f"{', '.join(names)} {'has' if len(names) == 1 else 'have'} {show(list(digests))}"
                for digests, names in groups.items()))
    if problems:
        raise MergeError("cannot merge: " + ". ".join(problems) + ". Merge only runs benched on the same test set "
                         "and references, from the same teacher, with the same fairseq-wd-bench settings")


def scorer_for(runs):
    """A Scorer set as the runs' sacrebleu signatures say (tokenizer, case), its signatures checked against
    theirs once it has scored."""
    fields = dict(part.split(":", 1) for part in runs[0].settings["sacrebleu"].split("|") if ":" in part)
    return scoring.Scorer(runs[0].references, tokenize=fields.get("tok", "13a"),
                             lowercase=fields.get("case") == "lc")


def seeds_of(runs, name):
    """A row's seeds over the runs: [(run, index in the run, checksum)], each checkpoint once."""
    seen, seeds = set(), []
    for run in runs:
        for k, digest in enumerate(run.checksums.get(name, [])):
            if digest not in seen:
                seen.add(digest)
                seeds.append((run, k, digest))
    return seeds


def pair_label(run, i, j, n_system, n_baseline):
    """How a seed pair (system seed i, baseline seed j, from 0) of `run` is named in tables."""
    return run.label if n_system == n_baseline == 1 else f"{run.label} seeds {i + 1}-{j + 1}"


def seed_label(run, k, n):
    return run.label if n == 1 else f"{run.label} seed {k + 1}"


def merged_row(name, runs, scorer):
    """Row `name` over the runs: each seed rescored (refused where sacrebleu here signs otherwise than the
    runs, or a seed rescores otherwise than its bench recorded), BLEU and chrF mean and sd over the seeds,
    speed as the first run timed it (None where it lacks the row)."""
    seeds = seeds_of(runs, name)
    scored = []
    for run, k, digest in seeds:
        score = scorer.corpus(run.hypotheses[name][k])
        if scorer.signatures != {"bleu": run.settings["sacrebleu"], "chrf": run.settings["sacrebleu_chrf"]}:
            raise MergeError(f"sacrebleu here signs {scorer.signatures['bleu']}, run {run.label} "
                             f"{run.settings['sacrebleu']}: merge with the sacrebleu version the runs were scored with")
        stored = next(r for r in run.rows if r["name"] == name)["seeds"][k]
        if abs(score["bleu"] - stored["bleu"]) > 0.006 or abs(score["chrf"] - stored["chrf"]) > 0.006:
            raise MergeError(f"run {run.label}: row {name!r} seed {k + 1} rescores to BLEU {score['bleu']:.2f}, chrF "
                             f"{score['chrf']:.2f}, its bench.json says {stored['bleu']:.2f}, {stored['chrf']:.2f}: "
                             "its hypothesis file changed after the bench; bench that run again")
        scored.append({"run": run.label, "seed": k + 1, "label": seed_label(run, k, len(run.checksums[name])),
                       "checkpoint_sha256": digest, "bleu": score["bleu"], "chrf": score["chrf"]})
    first = next(r for r in runs[0].rows if r["name"] == name) if name in runs[0].checksums else None
    described = next(r for run in runs for r in run.rows if r["name"] == name)
    row = {"name": name, "engine": described.get("engine", "fairseq"), "params": described.get("params"),
           "weights_mb": described.get("weights_mb"), "seeds": scored}
    for metric in ("bleu", "chrf"):
        values = [s[metric] for s in scored]
        row[metric] = statistics.mean(values)
        row[f"{metric}_sd"] = statistics.stdev(values) if len(values) > 1 else None
    row["speed"] = None if first is None else {
        "run": runs[0].label, **{k: first[k] for k in ("sentences_per_s", "tokens_per_s", "speedup")}}
    return row


def pairs_of(runs):
    """The (row, baseline) pairs the runs' benches tested, in the order first met."""
    pairs = []
    for run in runs:
        pairs += [test for test in run.tests if test not in pairs]
    return pairs


def paired_tests(name, baseline, runs, scorer, n_samples):
    """Seed pairs within each run that holds both rows (scoring.seed_pairs), each checkpoint pair once,
    each tested; their summary (scoring.summarize) with each pair's label, or None if no run holds both."""
    seen, labelled, tests = set(), [], []
    for run in runs:
        if name not in run.checksums or baseline not in run.checksums:
            continue
        a, b = run.checksums[name], run.checksums[baseline]
        for i, j in scoring.seed_pairs(len(a), len(b)):
            if (a[i], b[j]) in seen:
                continue
            seen.add((a[i], b[j]))
            labelled.append(pair_label(run, i, j, len(a), len(b)))
            tests.append(scorer.paired_bootstrap(run.hypotheses[baseline][j], run.hypotheses[name][i], n_samples))
    if not tests:
        return None
    return {"model": name, "baseline": baseline, "seed_pairs": labelled, **scoring.summarize(tests)}


def merge(folders, teacher=None, n_samples=scoring.BOOTSTRAP_SAMPLES):
    """The merged report of the bench outputs in `folders` (see the module's guarantees). `teacher`: the
    row whose checkpoint every run must share (default: the first run's first row)."""
    if not folders:
        raise MergeError("no run given: give one or more fairseq-wd-bench output folders")
    runs = [load_run(folder, label) for folder, label in zip(folders, labels(folders))]
    teacher = teacher or runs[0].rows[0]["name"]
    check_alike(runs, teacher)
    scorer = scorer_for(runs)
    names = []
    for run in runs:
        names += [r["name"] for r in run.rows if r["name"] not in names]
    rows = [merged_row(name, runs, scorer) for name in names]
    tests = [t for t in (paired_tests(a, b, runs, scorer, n_samples) for a, b in pairs_of(runs)) if t]
    s = runs[0].settings
    shared = {k: s[k] for _, keys in ALIKE for k in keys}
    return {"runs": [{"label": r.label, "threads": r.settings["threads"], "repeats": r.settings["repeats"]}
                     for r in runs],
            "settings": {**shared, "teacher": teacher, "teacher_checkpoint_sha256": runs[0].checksums[teacher],
                         "bootstrap_samples": n_samples, "speed_from": runs[0].label},
            "models": rows, "significance": tests}


def cell(mean, sd, sign=""):
    return f"{mean:{sign}.2f}" if sd is None else f"{mean:{sign}.2f} +- {sd:.2f}"


def markdown(report):
    """merged.md: the runs and what they share, a row per model (mean +- sd over its seeds, speed from the
    first run), and the paired tests, each seed pair's difference and p."""
    s, runs = report["settings"], report["runs"]
    first = runs[0]
    limit = f"{s['max_len_a']:g} x source + {s['max_len_b']}" if s["max_len_a"] else f"{s['max_len_b']}"
    names = ", ".join(f"`{r['label']}`" for r in runs)
    lines = [f"Merged from {len(runs)} bench runs: {names}. A row's seeds are "
             "its distinct checkpoints over the runs (sha256), so a teacher shared by every run counts once.", "",
             f"Shared by every run: {s['sentences']} sentences of '{s['gen_subset']}'"
             + (f" ({s['pair']})" if s["pair"] else "")
             + f" (sources sha256 {s['sources_sha256'][:SUMMARY]}), references sha256 "
             f"{', '.join(d[:SUMMARY] for d in s['references_sha256'])}, teacher `{s['teacher']}` (checkpoint sha256 "
             f"{', '.join(d[:SUMMARY] for d in s['teacher_checkpoint_sha256'])}), beam {s['beam']}, lenpen "
             f"{s['lenpen']}, batch {s['batch_size']}, max length {limit}, min length {s['min_len']}, {s['device']}"
             + (f", fairseq rows: {' '.join(s['generate_args'])}" if s["generate_args"] else "")
             + f"; sacrebleu BLEU {s['sacrebleu']}, chrF {s['sacrebleu_chrf']}.", "",
             "| # | model | seeds | BLEU | chrF | BLEU per seed | sentences/s | tokens/s | speed-up |",
             "|---|---|---|---|---|---|---|---|---|"]
    number = {}
    for n, m in enumerate(report["models"], 1):
        number[m["name"]] = f"#{n} {m['name']}"
        speed = m["speed"]
        pace = ["-", "-", "-"] if speed is None else [f"{speed['sentences_per_s']:.1f}", f"{speed['tokens_per_s']:.0f}",
                                                      f"{speed['speedup']:.2f}x"]
        per_seed = ", ".join(f"{x['bleu']:.2f}" for x in m["seeds"])
        lines.append(f"| {n} | {m['name']} | {len(m['seeds'])} | {cell(m['bleu'], m['bleu_sd'])} | "
                     f"{cell(m['chrf'], m['chrf_sd'])} | {per_seed} | {' | '.join(pace)} |")
    lines += ["", "BLEU, chrF: mean +- sd over a row's seeds (BLEU per seed in run order). Speed: run "
                  f"`{first['label']}`'s alone ({first['threads']} threads, median of {first['repeats']} runs; - where "
                  "that run lacks the row)."]
    if report["significance"]:
        lines += ["", f"Paired bootstrap resampling ({s['bootstrap_samples']} resamples of the test sentences, drawn "
                      "once, shared by both systems; p as sacrebleu --paired-bs defines and prints it), the row minus "
                      "its baseline, seed pair by seed pair within each run: the differences' mean +- sd over the "
                      "seed pairs, then each pair's difference (p). Each pair's 95% interval is in merged.json.", "",
                  "| model | against | seed pairs | BLEU difference | BLEU per seed pair (p) | chrF difference | "
                  "chrF per seed pair (p) |", "|---|---|---|---|---|---|---|"]
        for t in report["significance"]:
            cells = []
            for metric in ("bleu", "chrf"):
                m = t[metric]
                cells += [cell(m["difference"], m["sd"], "+"),
                          ", ".join(f"{label} {x['difference']:+.2f} ({x['p']:.4f})"
                                    for label, x in zip(t["seed_pairs"], m["per_seed"]))]
            lines.append(f"| {number[t['model']]} | {number[t['baseline']]} | {len(t['seed_pairs'])} | "
                         f"{' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def write(report, output_dir):
    """merged.md and merged.json into `output_dir`; returns merged.md's text."""
    os.makedirs(output_dir, exist_ok=True)
    table = markdown(report)
    with open(os.path.join(output_dir, "merged.md"), "w", encoding="utf-8") as f:
        f.write(table)
    with open(os.path.join(output_dir, "merged.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    return table
