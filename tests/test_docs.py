"""The docs are kept true: every `fairseq-wd-*` command in a fenced block of the README, CONTRIBUTING and docs/
parses with its command's parser; every relative link and #anchor resolves; docs/cli.md is what
`python -m fairseq_wd.cli.reference` renders; no page names a path of the machine it was written on.
Fast: nothing is trained or decoded. The last tests show that each check fails on a bad page."""
import contextlib
import glob
import io
import os
import re
import shlex

import pytest

from fairseq_wd.cli import reference

from utils import REPO

PAGES = sorted(glob.glob(os.path.join(REPO, "docs", "**", "*.md"), recursive=True))
COMMAND_PAGES = [os.path.join(REPO, "README.md"), os.path.join(REPO, "CONTRIBUTING.md"), *PAGES]
LINK_PAGES = [*COMMAND_PAGES, os.path.join(REPO, "CHANGELOG.md")]
SHELL = {"", "bash", "sh", "shell", "console"}
OPERATORS = {"|", "||", "&&", ";", "&"}
REDIRECTS = {">", ">>", "<", ">&", "&>", "<<", "<<<", ">|"}
ASSIGNMENT = re.compile(r"[A-Za-z_]\w*=")
ABSOLUTE = re.compile(r"(?<![\w.~-])/(?:work|root|home|tmp|Users)/")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)\s*([\w+-]*)")


def rel(path):
    return os.path.relpath(path, REPO)


def fenced_blocks(text):
    """(info string, first line number, lines) of each fenced code block."""
    block, fence = None, None
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if block is None and m:
            block, fence = (m.group(2).lower(), n + 1, []), m.group(1)
        elif block is not None and line.strip().startswith(fence):
            yield block
            block = None
        elif block is not None:
            block[2].append(line)


def prose_lines(text, code=False):
    """(line number, line) outside fenced blocks; inline code removed unless `code`."""
    inside = None
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if inside is None and m:
            inside = m.group(1)
        elif inside is not None and line.strip().startswith(inside):
            inside = None
        elif inside is None:
            yield n, line if code else re.sub(r"`[^`]*`", "", line)


def joined(lines, first):
    """(line number, command) with backslash continuations joined."""
    start, parts = None, []
    for n, line in enumerate(lines, first):
        line = line.strip()
        line = line[2:] if line.startswith("$ ") else line
        start = n if start is None else start
        if line.endswith("\\"):
            parts.append(line[:-1])
            continue
        yield start, " ".join([*parts, line])
        start, parts = None, []
    if parts:
        yield start, " ".join(parts)


def invocations(command, variables):
    """argv lists of the fairseq-wd-* commands in a shell line: comments, pipes, `&&`, `;` and redirections
    cut, leading VAR=value and `time` skipped, $VAR of an earlier assignment in the block expanded, `...`
    (options left out) dropped. Assignments alone on a line are added to `variables`."""
    for name, value in variables.items():
        command = re.sub(r"\$(%s\b|\{%s\})" % (name, name), lambda _: value, command)
    command = re.sub(r"(?<=\s)\d(?=[<>])", "", command)  # 2>&1: the descriptor goes with its redirection
    lexer = shlex.shlex(command, posix=True, punctuation_chars="|&;<>")
    lexer.whitespace_split, lexer.commenters = True, "#"
    tokens, segments = list(lexer), [[]]
    skip = False
    for token in tokens:
        if skip:
            skip = False
        elif token in OPERATORS:
            segments.append([])
        elif token in REDIRECTS or re.fullmatch(r"\d?[<>]&?\d*", token):
            skip = not re.fullmatch(r"\d?>&\d", token)
        else:
            segments[-1].append(token)
    for argv in segments:
        while argv and (ASSIGNMENT.match(argv[0]) or argv[0] == "time"):
            if len(argv) == 1 and ASSIGNMENT.match(argv[0]):
                name, value = argv[0].split("=", 1)
                variables[name] = value
            argv = argv[1:]
        if argv and os.path.basename(argv[0]).startswith("fairseq-wd-"):
            yield os.path.basename(argv[0]), [a for a in argv[1:] if a != "..."]


def parse_error(command, argv):
    """None if the command's own parser takes argv, else its message."""
    if command not in reference.commands():
        return f"{command}: no such command in setup.py"
    parser = reference.parser(command)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            if command in reference.BASED_ON:  # fairseq's parser: the task's and arch's options come in a 2nd pass
                from fairseq import options
                options.parse_args_and_arch(parser, argv)
            else:
                parser.parse_args(argv)
    except SystemExit as e:
        return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {e.code}"
    return None


def command_errors(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    errors = []
    for info, first, lines in fenced_blocks(text):
        if info not in SHELL:
            continue
        variables = {}
        for n, line in joined(lines, first):
            try:
                found = list(invocations(line, variables))
            except ValueError as e:  # shlex: an unclosed quote
                if "fairseq-wd-" in line:
                    errors.append(f"{rel(path)}:{n}: {line}: {e}")
                continue
            for command, argv in found:
                message = parse_error(command, argv)
                if message:
                    errors.append(f"{rel(path)}:{n}: {command} {' '.join(map(shlex.quote, argv))}: {message}")
    return errors


def slugs(path):
    """The #anchors GitHub makes of a page's headings."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    found, seen = set(), {}
    for _, line in prose_lines(text, code=True):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        heading = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))
        slug = re.sub(r"[^\w\- ]", "", re.sub(r"<[^>]+>", "", heading).strip().lower()).replace(" ", "-")
        found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return found


def link_errors(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    errors = []
    for n, line in prose_lines(text):
        for target in LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
            if not os.path.exists(resolved):
                errors.append(f"{rel(path)}:{n}: {target}: {file} does not exist")
            elif anchor and resolved.endswith(".md") and anchor not in slugs(resolved):
                errors.append(f"{rel(path)}:{n}: {target}: no heading #{anchor} in {rel(resolved)}")
    return errors


def path_errors(path):
    with open(path, encoding="utf-8") as f:
        return [f"{rel(path)}:{n}: {m.group(0)}" for n, line in enumerate(f, 1) for m in ABSOLUTE.finditer(line)]


MODULE = re.compile(r"`(fairseq_wd/[\w./-]*\w)")


def module_errors(path):
    """Code paths named in `backticks` (fairseq_wd/...) that do not exist: a page left behind a move."""
    with open(path, encoding="utf-8") as f:
        return [f"{rel(path)}:{n}: {m.group(1)} does not exist" for n, line in enumerate(f, 1)
                for m in MODULE.finditer(line) if not os.path.exists(os.path.join(REPO, m.group(1)))]


def stale(cli_md):
    with open(cli_md, encoding="utf-8") as f:
        return f.read() != reference.render()


@pytest.mark.parametrize("path", COMMAND_PAGES, ids=rel)
def test_every_documented_command_parses(path, monkeypatch):
    monkeypatch.chdir(REPO)  # --user-dir fairseq_wd, as in a checkout
    errors = command_errors(path)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("path", LINK_PAGES, ids=rel)
def test_every_relative_link_and_anchor_resolves(path):
    errors = link_errors(path)
    assert not errors, "\n".join(errors)


def test_cli_reference_is_up_to_date():
    assert not stale(os.path.join(REPO, "docs", "cli.md")), "docs/cli.md is stale: python -m fairseq_wd.cli.reference"


@pytest.mark.parametrize("path", COMMAND_PAGES, ids=rel)
def test_every_code_path_named_exists(path):
    errors = module_errors(path)
    assert not errors, "\n".join(errors)


def test_no_machine_paths_in_the_docs():
    kept = glob.glob(os.path.join(REPO, "docs", "results", "**", "*.json"), recursive=True)
    errors = [e for p in [*LINK_PAGES, *kept] for e in path_errors(p)]
    assert not errors, "\n".join(errors)


def test_every_check_fails_on_a_bad_page(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading: here\n\n## A `code` heading: here\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[fine](other.md#a-code-heading-here) [also](other.md#a-code-heading-here-1) [self](#page)\n"
        "[gone](missing.md) [no anchor](other.md#nowhere) [web](https://example.org/x) `[code](nowhere.md)`\n\n"
        "```bash\nfairseq-wd-merge run1/bench run2/bench --output merged   # fine\n"
        "LANGS=\"--lowercase\"\nfairseq-wd-bench data-bin --model a=b.pt $LANGS ... | tail -1\n"
        "fairseq-wd-merge run1/bench --output m \\\n    --no-such-option 2>&1 > log\n"
        "OMP_NUM_THREADS=1 fairseq-wd-shortlist data-bin && fairseq-wd-nothing\n"
        "fairseq-wd-merge 'unclosed\n```\n\n"
        "```text\nfairseq-wd-merge --not-checked-in-text-blocks\n```\n"
        "Written in /tmp/x and /home/me/y; data/wmt16_en_ro/work/bench is relative.\n"
        "See `fairseq_wd/compat.py` and `fairseq_wd/decoding.py`.\n")
    assert link_errors(str(page)) == [f"{rel(str(page))}:4: missing.md: missing.md does not exist",
                                      f"{rel(str(page))}:4: other.md#nowhere: no heading #nowhere in "
                                      f"{rel(str(tmp_path / 'other.md'))}"]
    errors = command_errors(str(page))
    assert [e.split(": ")[0].rsplit(":", 1)[1] + " " + e.split(": ")[1].split()[0] for e in errors] == [
        "10 fairseq-wd-merge", "12 fairseq-wd-shortlist", "12 fairseq-wd-nothing", "13 fairseq-wd-merge"], errors
    assert "--no-such-option" in errors[0] and "--output" in errors[1] and "no such command" in errors[2]
    assert "No closing quotation" in errors[3]
    assert [e.rsplit(": ", 1)[1] for e in path_errors(str(page))] == ["/tmp/", "/home/"]
    assert {"page", "other.md"} & slugs(str(page)) == {"page"}
    assert [e.rsplit(": ", 1)[1] for e in module_errors(str(page))] == ["fairseq_wd/decoding.py does not exist"]
    cli = tmp_path / "cli.md"
    cli.write_text(reference.render().replace("--output", "--out", 1))
    assert stale(cli)
