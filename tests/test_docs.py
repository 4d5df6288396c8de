"""Every command example in the README and docs/ runs as written, or says what it needs.

A ```sh or ```console block whose lines start with ``podcap`` (or ``$ podcap``) is run with
bash from a scratch folder that sees the bundled samples and notebooks, and must exit with the
status the page gives (a ``$ echo $?`` line after the command, or ``<!-- exit: N -->`` before
the block; 0 otherwise; for a pipeline, its last command's). In a ```console block the lines
after a ``$ podcap ...`` command, up to the next ``$`` line, are what it prints: its output
must be exactly that, so a page never shows what the command no longer gives. A block that needs
what this machine cannot give (a cluster, a node to ssh into, captures that are not bundled)
says so with ``<!-- needs: WHAT -->`` before it, and is only checked for being one.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"((?:<!--[^\n]*-->\n+)*)```(sh|console)\n(.*?)```", re.S)
NEEDS_CLUSTER = ("capture", "netns", "inspect", "cleanup", "diagnose")


def _commands(body: str, console: bool = False) -> list[list]:
    """The podcap command lines of a block as ``[command, status, output]``: continuation lines
    joined, comments dropped; the status is what a following ``$ echo $?`` shows, else None;
    the output, in a console block, the lines shown after the command, else None."""
    commands, current, status_next, shown = [], "", False, None
    for raw in body.splitlines():
        if status_next:
            commands[-1][1] = int(raw.strip())
            status_next = False
            continue
        if raw.strip() == "$ echo $?" and commands:
            status_next, shown = True, None
            continue
        line = raw.removeprefix("$ ")
        if current:
            current += " " + line.strip()
        elif line.startswith("podcap ") or line.startswith("echo ") and "| podcap" in line:
            current = line
        else:
            if raw.startswith("$"):
                shown = None  # another command's output follows
            elif shown is not None:
                shown.append(raw)
            continue
        if current.endswith("\\"):
            current = current[:-1]
            continue
        shown = [] if console else None
        commands.append([re.sub(r"\s+#\s.*$", "", current).strip(), None, shown])
        current = ""
    return commands


def _examples():
    for page in PAGES:
        for match in BLOCK.finditer(page.read_text()):
            markers, kind, body = match.group(1), match.group(2), match.group(3)
            commands = _commands(body, console=kind == "console")
            if commands:
                line = page.read_text()[: match.start(3)].count("\n") + 1
                yield pytest.param(markers, commands, id=f"{page.name}:{line}")


EXAMPLES = list(_examples())


def _runnable_here(command: str) -> bool:
    words = shlex.split(command.split("|")[0])
    podcap = words[words.index("podcap") :] if "podcap" in words else words
    if len(podcap) > 1 and podcap[1] in NEEDS_CLUSTER:
        return False
    files = [w for w in podcap[2:] if w.endswith((".pcap", ".pcapng", ".gz", ".iptables"))]
    return all((ROOT / name).exists() for word in files for name in _expand(word))


def _expand(word: str) -> list[str]:
    """``10-snat-{pod,node}.pcap`` -> both names, as bash expands them."""
    found = re.search(r"\{([^}]*)\}", word)
    if not found:
        return [word]
    return [
        word[: found.start()] + part + word[found.end() :] for part in found.group(1).split(",")
    ]


def test_the_pages_have_examples():
    assert len(EXAMPLES) >= 12


@pytest.mark.parametrize("markers, commands", EXAMPLES)
def test_example(markers, commands, tmp_path):
    if "needs:" in markers:
        # A block that needs a cluster or a node is only ever marked, never silently passed.
        assert not all(_runnable_here(c) for c, _, _ in commands), (
            "marked as needing more, but runs here"
        )
        return
    unrunnable = [c for c, _, _ in commands if not _runnable_here(c)]
    assert unrunnable == [], "add <!-- needs: cluster/node/captures --> before this block"
    expected = int(re.search(r"exit: (\d+)", markers).group(1)) if "exit:" in markers else 0
    for name in ("sample_pcaps", "notebooks"):
        (tmp_path / name).symlink_to(ROOT / name)
    shim = tmp_path / "bin" / "podcap"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m podcap "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{shim.parent}:{os.environ['PATH']}", "COLUMNS": "120"}
    env["PYTHONPATH"] = str(ROOT)
    for command, status, shown in commands:
        run = subprocess.run(
            ["bash", "-c", command],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode == (expected if status is None else status), (
            f"{command}\n{run.stderr[-2000:]}"
        )
        assert "Traceback" not in run.stderr
        if shown:
            printed = [line.rstrip() for line in run.stdout.rstrip("\n").splitlines()]
            assert printed == [line.rstrip() for line in shown], (
                f"{command}: the page shows other output"
            )


PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
SESSIONS = [
    pytest.param(page, id=page.name)
    for page in PAGES
    if any(">>>" in block for block in PYTHON_BLOCK.findall(page.read_text()))
]


@pytest.mark.parametrize("page", SESSIONS)
def test_python_sessions_give_what_the_page_shows(page, monkeypatch):
    """Every ``>>>`` session in a ```python block runs as a doctest from the repository root,
    the blocks of one page in one namespace, as a reader would type them in one interpreter."""
    import doctest

    monkeypatch.chdir(ROOT)
    parser, runner = (
        doctest.DocTestParser(),
        doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE),
    )
    namespace: dict = {}
    for number, block in enumerate(PYTHON_BLOCK.findall(page.read_text())):
        if ">>>" in block:
            test = parser.get_doctest(block, namespace, f"{page.name}[{number}]", str(page), 0)
            runner.run(test, clear_globs=False)
            namespace = test.globs  # the next block goes on where this one ended
    assert runner.summarize(verbose=False).failed == 0


def test_the_architecture_page_lists_every_module_as_it_says_what_it_is_for():
    from scripts.architecture_table import PAGE, page_with_tables

    page = PAGE.read_text()
    assert page == page_with_tables(page), "run: python3 -m scripts.architecture_table --write"
