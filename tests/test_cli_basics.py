import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from podcap import __version__
from testbed.helpers import podcap, start_podcap


def test_version_prints_the_package_version():
    result = podcap("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"podcap {__version__}"


def test_help_lists_commands_and_is_fast():
    podcap("--help")  # warm the bytecode cache
    started = time.perf_counter()
    result = podcap("--help")
    elapsed = time.perf_counter() - started
    assert result.returncode == 0
    assert "Usage: podcap" in result.stdout
    # Generous bound for a loaded CI machine; the README records the measured figure.
    assert elapsed < 2.0


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys; sys.argv=['podcap','--help']\n"
        "from podcap.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy=[m for m in ('pandas','kubernetes','pyshark','pyarrow','numpy') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in result.stderr


def test_analyze_loads_only_what_it_needs():
    """What a flows report needs, and no more: pyshark, kubernetes and pydantic (which typer
    0.29 imports for every command, hence the pin in pyproject.toml) cost start-up."""
    sample = Path(__file__).resolve().parent.parent / "sample_pcaps" / "01-http-mytest.pcap"
    code = (
        "import sys\n"
        f"sys.argv=['podcap','analyze',{str(sample)!r},'-r','flows','-F','csv']\n"
        "from podcap.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "names=('pandas','pyshark','kubernetes','pydantic')\n"
        "print('LOADED', [m for m in names if m in sys.modules], file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "client_ip" in result.stdout  # the report really ran
    assert "LOADED ['pandas']" in result.stderr, result.stderr


def console_run(*args: str) -> subprocess.CompletedProcess:
    """``podcap ARGS`` through the console entry point, with an atexit handler that tells
    whether Python's own clean-up at exit ran."""
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('CLEAN-UP RAN', file=sys.stderr))\n"
        f"sys.argv = ['podcap', *{list(args)!r}]\n"
        "from podcap.cli import console\n"
        "console()\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_analyze_ends_at_once_with_all_its_output_and_its_status():
    """After analyze the process skips Python's clean-up (0.1-0.2 s with pandas loaded), yet
    every byte of a report larger than stdout's buffer is out, and the exit status is kept."""
    from podcap.analysis.run import analyze

    sample = Path(__file__).resolve().parent.parent / "sample_pcaps" / "08-any-sll2.pcap"
    run = console_run("analyze", str(sample), "-r", "packets", "-F", "json")
    assert run.returncode == 0, run.stderr
    assert "CLEAN-UP RAN" not in run.stderr
    assert len(run.stdout) > 8192
    packets = json.loads(run.stdout)["packets"]
    assert len(packets) == len(analyze([sample], reports=["packets"])["packets"]) == 36
    nothing = console_run("analyze", str(sample), "--contains", "no-such-marker")
    assert nothing.returncode == 1
    assert "CLEAN-UP RAN" not in nothing.stderr


def test_other_commands_end_as_python_does():
    run = console_run("--version")
    assert run.returncode == 0
    assert run.stdout.strip() == f"podcap {__version__}"
    assert "CLEAN-UP RAN" in run.stderr


def test_unknown_flag_exits_2_without_traceback():
    result = podcap("--no-such-flag")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_usage_errors_are_one_line_naming_the_problem():
    for args, expected in [
        (["--no-such-flag"], "No such option: --no-such-flag"),
        (["analyze"], "no capture file given"),
        (["analyze", "x.pcap", "--max-rows", "abc"], "--max-rows"),
    ]:
        result = podcap(*args)
        assert result.returncode == 2, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("podcap: error: ") and expected in lines[0]


def test_no_arguments_shows_help_and_succeeds():
    result = podcap()
    assert result.returncode == 0
    assert "Usage: podcap" in result.stdout and "analyze" in result.stdout


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_a_closed_pipe_ends_quietly(fmt):
    # `podcap analyze ... | head -n 1`: the reader leaves early. The output (~400 kB of JSON)
    # is larger than a pipe buffer, so podcap really does write into a closed pipe.
    samples = sorted(str(p) for p in Path("sample_pcaps").glob("*.pcap")) * 20
    proc = start_podcap("analyze", *samples, "-r", "packets", "-F", fmt)
    proc.stdout.read(10)
    proc.stdout.close()
    _, stderr = proc.communicate(timeout=120)
    assert b"Traceback" not in stderr and stderr == b""
    # click ends such a run itself (0); anything it misses ends as a SIGPIPE'd tool does.
    assert proc.returncode in (0, 141)


def test_nothing_matched_exits_1_like_grep():
    result = podcap("analyze", "sample_pcaps/06-syn-dropped.pcap", "--contains", "no-such-marker")
    assert result.returncode == 1
    assert result.stderr == "" or "Traceback" not in result.stderr


def test_the_shared_options_agree_with_the_library():
    # podcap/cli/options.py spells these out (the help must not import the library).
    from podcap.cli import options
    from podcap.reach import pod
    from podcap.render import RENDERERS

    assert options.DEFAULT_HELPER_NAMESPACE == pod.DEFAULT_HELPER_NAMESPACE
    assert sorted(options.FORMATS.split(", ")) == sorted(RENDERERS)


def test_inspect_refuses_an_unknown_format_before_reaching_anything():
    result = podcap("inspect", "--pid", "1", "-F", "nosuch")
    assert result.returncode == 2
    assert "unknown format 'nosuch'" in result.stderr and "Traceback" not in result.stderr


BUGGY = """
import sys
import podcap.cli as cli

@cli.app.command()
def boom():
    raise RuntimeError("the first line\\nand a second")

cli.main(sys.argv[1:])
"""


def test_an_unexpected_error_is_one_line_and_debug_shows_its_traceback():
    done = subprocess.run([sys.executable, "-c", BUGGY, "boom"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr == (
        "podcap: error: unexpected RuntimeError: the first line (a bug in podcap: rerun with "
        "--debug for the traceback, and please report it)\n"
    )
    for debug in (["--debug", "boom"], ["boom", "--debug"]):
        done = subprocess.run([sys.executable, "-c", BUGGY, *debug], capture_output=True, text=True)
        assert done.returncode == 1 and "Traceback" in done.stderr
        assert "RuntimeError: the first line" in done.stderr


def test_debug_after_a_double_dash_belongs_to_the_command():
    from podcap.cli import _debug_flag

    assert _debug_flag(["netns", "web-0", "--", "tool", "--debug"]) == (
        ["netns", "web-0", "--", "tool", "--debug"],
        False,
    )
    assert _debug_flag(["netns", "--debug", "web-0", "--", "x"]) == (
        ["netns", "web-0", "--", "x"],
        True,
    )


@pytest.mark.parametrize("command", [[], ["analyze"], ["capture"], ["netns"], ["cleanup"]])
def test_dash_h_is_help_everywhere(command):
    done = podcap(*command, "-h")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: podcap")


def test_kubectl_runs_podcap_as_its_plugin():
    # kubectl runs kubectl-NAME from PATH as `kubectl NAME`; pip installs it beside podcap.
    plugin = Path(sys.executable).parent / "kubectl-podcap"
    done = subprocess.run([str(plugin), "-h"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: kubectl podcap [OPTIONS] COMMAND")


def test_shell_completion_completes_commands_and_flags():
    for words, cword, expected in (
        ("podcap ana", "1", "analyze"),
        ("podcap analyze --eng", "2", "--engine"),
    ):
        env = {
            **os.environ,
            "_PODCAP_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": cword,
        }
        done = subprocess.run(
            [sys.executable, "-m", "podcap"], capture_output=True, text=True, env=env
        )
        assert done.returncode == 0 and done.stdout.split() == [expected], done
    assert "--install-completion" in podcap("--help").stdout


def test_capture_without_a_target_says_what_a_target_is(tmp_path):
    done = podcap("capture", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("podcap: error: nothing to capture: name Pods (NAME, deploy/NAME")


def test_times_in_tables_say_utc_and_durations_have_no_float_noise():
    sample = Path(__file__).resolve().parent.parent / "sample_pcaps" / "06-syn-dropped.pcap"
    table = podcap(
        "analyze", sample, "-r", "http,flows", "--columns", "first_ts,duration", "-r", "flows"
    )
    assert "2026-11-26 10:29:51.094285 UTC" in table.stdout
    csv = podcap("analyze", sample, "-F", "csv").stdout.splitlines()
    assert dict(zip(csv[0].split(","), csv[1].split(","), strict=True))["duration"] == "3.06156"


@pytest.mark.parametrize("command", ["netns", "inspect"])
def test_netns_and_inspect_help_speaks_of_entering_not_capturing(command):
    text = " ".join(podcap(command, "-h").stdout.split())
    assert "Container to capture in" not in text
    assert "--container-id ID The container whose network namespace to enter" in text
