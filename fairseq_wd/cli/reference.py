"""docs/cli.md, the reference of every `fairseq-wd-*` command, rendered from the commands' own parsers:
`python -m fairseq_wd.cli.reference` writes it; tests/test_docs.py checks that it is up to date."""
import argparse
import importlib
import os
import re
import sys
from unittest import mock

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLUMNS = "100"  # argparse wraps at the terminal's width: fixed, so that the output does not depend on it
BASED_ON = {"fairseq-wd-distill-data": "fairseq-generate"}  # shown: only the options added to fairseq's parser


def commands():
    """{command: module} of the console scripts in setup.py, in its order."""
    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as f:
        return dict(re.findall(r'"(fairseq-wd-[\w-]+) = ([\w.]+):main"', f.read()))


def parser(command):
    """The command's argparse parser, from its module's get_parser()."""
    p = importlib.import_module(commands()[command]).get_parser()
    p.prog = command
    return p


def help_text(command):
    p = parser(command)
    with mock.patch.dict(os.environ, {"COLUMNS": COLUMNS}):
        if command not in BASED_ON:
            return p.format_help()
        from fairseq import options
        theirs = {s for a in options.get_generation_parser()._actions for s in a.option_strings}
        own = [a for a in p._actions if a.option_strings and not theirs & set(a.option_strings)]
        f = argparse.RawDescriptionHelpFormatter(f"{command} DATA")
        f.add_usage(None, own, [])
        f.add_text(importlib.import_module(commands()[command]).__doc__)
        f.start_section(f"its own options (it takes every {BASED_ON[command]} option too: {BASED_ON[command]} --help)")
        f.add_arguments(own)
        f.end_section()
        return f.format_help()


def render():
    lines = ["# Command-line reference", "", "Every `fairseq-wd-*` command's `--help`, generated from its parser by "
             "`python -m fairseq_wd.cli.reference`: do not edit by hand.", ""]
    lines += [f"- [{c}](#{c})" for c in commands()] + [""]
    for c in commands():
        lines += [f"## {c}", "", "```text", help_text(c).rstrip(), "```", ""]
    return "\n".join(lines)


def main(argv=None):
    out = (sys.argv[1:] if argv is None else argv) or [os.path.join(REPO, "docs", "cli.md")]
    with open(out[0], "w", encoding="utf-8") as f:
        f.write(render())


if __name__ == "__main__":
    main()
