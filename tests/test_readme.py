"""The README's Quick start is what a newcomer runs: keep it exactly two working commands."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_quick_start_is_two_commands_and_ci_runs_the_second():
    commands = quick_start_commands()
    assert len(commands) == 2
    assert commands[0].startswith("pip install . && podcap analyze sample_pcaps/")
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci


def test_quick_start_analyses_find_the_request_and_the_snat_verdict():
    # The install part has been done by the test set-up; run the analyses as written, at the
    # width of a small terminal.
    analyses = quick_start_commands()[0].split("&&")[1:]
    outputs = []
    for analysis in analyses:
        argv = shlex.split(analysis)
        assert argv[0] == "podcap"
        result = subprocess.run(
            [sys.executable, "-m", "podcap", *argv[1:]],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={"COLUMNS": "80", "PATH": "/usr/bin:/bin"},
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    request, verdicts = outputs
    assert "/mytest" in request and "200" in request
    assert "│ verdict      │ snat " in verdicts and "NonMasqueradeCIDRs" in verdicts
    assert "│ rewritten_by │ 172.20.0.11" in verdicts
