"""The pipeline's keyed steps (pipeline/steps.py) on plain shell commands: what a rerun redoes and why."""
import os
import sys

from fairseq_wd.pipeline import allocator
from fairseq_wd.pipeline.steps import StepRunner


def rerun(work, source, *options, redo=()):
    """A two-step chain as a fresh pipeline run: `copy` reads the given file, `twice` reads `copy`."""
    steps = StepRunner(work, redo=redo)
    steps.keyed(work / "copy", "cp", *options, source, work / "copy")
    steps.keyed(work / "twice", "sh", "-c", 'cat "$1" "$1" > "$2"', "-", work / "copy", work / "twice")
    return (work / "twice").read_text()


def test_a_step_is_redone_when_what_made_it_changed(tmp_path, capsys):
    work, source = tmp_path / "work", tmp_path / "given.txt"
    work.mkdir()
    source.write_text("a\n")
    assert rerun(work, source) == "a\na\n"
    assert rerun(work, source) == "a\na\n" and capsys.readouterr().out.count("done already") == 2

    source.write_text("b\n")  # same path, other content (a retrained teacher): both steps redone
    assert rerun(work, source) == "b\nb\n"
    said = capsys.readouterr().out
    assert f"input {source} was redone or changed" in said
    assert "input $WORK/copy was redone or changed" in said, "the step after it follows"
    assert len(list((work / "stale").iterdir())) == 4, "both old outputs and their marks moved aside, not deleted"

    assert rerun(work, source, "-p") == "b\nb\n"  # another option: the log names it
    said = capsys.readouterr().out
    assert "command: '-p' added" in said and said.count("redoing") == 2, "a new key, so the step after it too"

    source.write_text("a\n")  # the first settings again: taken back, nothing run
    assert rerun(work, source) == "a\na\n"
    said = capsys.readouterr().out
    assert said.count("taken back from") == 2 and "+ cp" not in said


def test_a_killed_step_resumes_and_redo_forces_a_step(tmp_path, capsys):
    work, source = tmp_path / "work", tmp_path / "given.txt"
    work.mkdir()
    source.write_text("a\n")
    steps = StepRunner(work)
    assert not steps.begin(work / "copy", ["cp", source, work / "copy"])  # killed before it finished
    (work / "copy").write_text("half")
    assert rerun(work, source) == "a\na\n" and f"resuming: {work / 'copy'}" in capsys.readouterr().out
    rerun(work, source, redo=["twice"])
    said = capsys.readouterr().out
    assert f"done already: {work / 'copy'}" in said and "redoing" in said and "--redo twice" in said
    for _ in range(2):  # a step redone with its key unchanged: the steps that read it follow
        rerun(work, source, redo=["copy"])
        said = capsys.readouterr().out
        assert "--redo copy" in said and "input $WORK/copy was redone or changed" in said
    assert len([f for f in (work / "stale").iterdir() if f.name.startswith("copy@") and
                not f.name.endswith(".step.json")]) == 2, "both earlier copies kept, none deleted"


def test_an_output_without_a_key_is_redone(tmp_path, capsys):
    """A work dir of an earlier version (its folders marked by an empty `done` file) is not trusted."""
    work, source = tmp_path / "work", tmp_path / "given.txt"
    (work / "copy").mkdir(parents=True)
    (work / "copy" / "done").write_text("")
    source.write_text("a\n")
    assert rerun(work, source) == "a\na\n"
    assert "no key stored" in capsys.readouterr().out and (work / "stale" / "copy@unkeyed" / "done").exists()


def test_a_command_gets_the_variables_given_to_it(tmp_path, monkeypatch):
    """`sh(..., env=)` adds variables to the command's environment, with a log and without; a CPU training
    gets glibc's settings that keep freed memory, unless the user set the allocator."""
    steps = StepRunner(tmp_path)
    shown = 'echo "$MALLOC_TRIM_THRESHOLD_ $PYTHONUNBUFFERED $HOME" > "$1"'
    steps.sh("sh", "-c", shown, "-", tmp_path / "plain", env={"MALLOC_TRIM_THRESHOLD_": "7"})
    steps.sh("sh", "-c", shown, "-", tmp_path / "logged", env={"MALLOC_TRIM_THRESHOLD_": "8"}, log=tmp_path / "log")
    home = os.environ.get("HOME", "")
    assert (tmp_path / "plain").read_text().split() == ["7", *os.environ.get("PYTHONUNBUFFERED", "").split(), *home.split()]
    assert (tmp_path / "logged").read_text().split() == ["8", "1", *home.split()]

    monkeypatch.setattr(sys, "platform", "linux")
    assert allocator.training_environment({"HOME": "/"}) == allocator.KEEP_FREED_MEMORY
    assert allocator.training_environment({"MALLOC_ARENA_MAX": "2"}) == {}
    assert allocator.training_environment({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}) == {}
    monkeypatch.setattr(sys, "platform", "darwin")
    assert allocator.training_environment({}) == {}
