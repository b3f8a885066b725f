"""README.md and the documentation pages: every command they show starts and answers ``--help``, every
repository path they mention exists, and they say nothing about files outside the repository."""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the pages a user reads
PAGES = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
PATH_PREFIXES = ("configs", "tools", "benchmarks", "docs", "vivit_tl", "tests", "constraints", ".ci")
PATH = re.compile(r"(?<![\w./~-])((?:%s)/[\w./*<>{},-]*[\w*}])" % "|".join(re.escape(p) for p in PATH_PREFIXES))
ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")


def shell_lines(text: str) -> list[str]:
    """The command lines of the fenced code blocks: continuations joined, comments dropped, ``&&`` split."""
    lines = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" # ")[0].strip()
            lines += [part.strip() for part in line.split("&&") if part.strip()]
    return lines


def help_target(line: str) -> tuple[str, ...] | None:
    """What to run with ``--help`` for a shown command: ``("-m", "vivit_tl", SUB)`` or ``(SCRIPT,)``; None for
    lines that are not vivit-tl commands (pip, pytest, Python code, ...)."""
    try:
        words = shlex.split(line)
    except ValueError:  # Python code in a code block
        return None
    while words and (ENV_ASSIGNMENT.match(words[0]) or words[0] == "time"):
        words = words[1:]
    if words[:1] == ["vivit-tl"]:
        words = ["python", "-m", "vivit_tl", *words[1:]]
    elif words[:2] == ["accelerate", "launch"]:
        rest = words[2:]
        start = next((i for i, w in enumerate(rest) if w == "-m" or w.endswith(".py")), None)
        assert start is not None, f"accelerate launch of nothing: {line}"
        words = ["python", *rest[start:]]
    if words[:1] != ["python"] or len(words) < 2:
        return None
    if words[1:3] == ["-m", "vivit_tl"]:
        sub = [w for w in words[3:4] if not w.startswith("-")]
        return ("-m", "vivit_tl", *sub)
    if re.fullmatch(r"(tools|benchmarks)/\w+\.py", words[1]):
        return (words[1],)
    return None


def shown_commands() -> dict[tuple[str, ...], str]:
    """Each distinct ``--help`` target -> the first page and command that shows it."""
    targets: dict[tuple[str, ...], str] = {}
    for page in PAGES:
        for line in shell_lines(page.read_text()):
            target = help_target(line)
            if target is not None:
                targets.setdefault(target, f"{page.relative_to(REPO)}: {line}")
    return targets


COMMANDS = shown_commands()


# One child process runs every target's ``--help`` in turn (torch is imported once, not once per target):
# ``runpy`` runs a script or ``python -m vivit_tl`` as ``__main__`` with its argv, as the shell would.
HELP_RUNNER = """
import contextlib, io, json, runpy, sys
results = []
for target in json.loads(sys.argv[1]):
    out, err, code = io.StringIO(), io.StringIO(), 0
    sys.argv = [target[1], *target[2:], "--help"] if target[0] == "-m" else [target[0], "--help"]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if target[0] == "-m":
                runpy.run_module(target[1], run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(target[0], run_name="__main__")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException as exc:
            code, _ = 1, err.write(f"{type(exc).__name__}: {exc}")
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


@lru_cache(maxsize=1)
def help_outputs() -> dict[tuple[str, ...], tuple[int, str, str]]:
    """``--help`` of every shown command: target -> (exit status, stdout, stderr)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    targets = list(COMMANDS)
    result = subprocess.run([sys.executable, "-c", HELP_RUNNER, json.dumps(targets)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return {target: tuple(r) for target, r in zip(targets, json.loads(result.stdout.splitlines()[-1]))}


def test_the_docs_show_the_commands_users_need():
    shown = {" ".join(t) for t in COMMANDS}
    for expected in ("-m vivit_tl train", "-m vivit_tl eval", "-m vivit_tl predict", "-m vivit_tl visualize",
                     "-m vivit_tl configs", "tools/train.py", "benchmarks/cifar10_table.py"):
        assert expected in shown


@pytest.mark.parametrize("target", list(COMMANDS), ids=[" ".join(t) for t in COMMANDS])
def test_shown_command_answers_help(target):
    code, out, err = help_outputs()[target]
    assert code == 0, f"{COMMANDS[target]}\n--help exit {code}:\n{err[-2000:]}"
    assert "usage" in out.lower(), COMMANDS[target]


def expand_braces(path: str) -> list[str]:
    """``a.{md,json}`` -> ``a.md``, ``a.json`` (one group)."""
    match = re.search(r"\{([^{}]*,[^{}]*)\}", path)
    if not match:
        return [path]
    return [path[: match.start()] + option + path[match.end():] for option in match.group(1).split(",")]


def mentioned_paths() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for path in sorted(set(PATH.findall(page.read_text()))):
            for one in expand_braces(path):
                if not re.search(r"[<>{}]", one):  # placeholders such as runs/<name> or {split}
                    found.append((str(page.relative_to(REPO)), one))
    return found


def test_the_docs_mention_repository_files():
    assert ("README.md", "docs/attention_demo.png") in mentioned_paths()


@pytest.mark.parametrize("page, path", mentioned_paths())
def test_mentioned_path_exists(page, path):
    if "*" in path:
        assert glob.glob(str(REPO / path)), f"{page} mentions {path}: nothing matches"
    else:
        assert (REPO / path).exists(), f"{page} mentions {path}, which is not in the repository"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_pages_speak_to_users_about_this_repository(page):
    text = page.read_text()
    for phrase in ("../shared", "SPEC.md", "SPEC §", "main job", "brief"):
        assert phrase not in text, f"{page.name} mentions {phrase!r}"
    assert not re.search(r"\bissues?\b", text, re.I), f"{page.name} talks about issues"


def test_readme_is_a_front_page():
    assert len((REPO / "README.md").read_text().splitlines()) <= 200


def test_shell_lines_and_targets():
    text = "```bash\nFOO=1 time accelerate launch --multi_gpu --num_processes 8 -m vivit_tl train \\\n  x=1  # c\n" \
           "pip install -e . && vivit-tl eval runs/a b\npython benchmarks/bench_models.py --preset cpu\n```\n"
    assert [help_target(line) for line in shell_lines(text)] == [
        ("-m", "vivit_tl", "train"), None, ("-m", "vivit_tl", "eval"), ("benchmarks/bench_models.py",)]
