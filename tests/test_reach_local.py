"""podcap.reach.local against real processes."""

import pytest

from podcap.errors import ReachError
from podcap.reach import open_transport


def test_local_run_collects_output_and_status():
    done = open_transport("local").run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (done.returncode, done.stdout, done.stderr) == (3, b"out\n", b"err\n")


def test_local_missing_program_is_a_reach_error():
    with pytest.raises(ReachError, match="cannot start"):
        open_transport("local").run(["/nonexistent/program"])
