import subprocess
import sys
import time

from podcap import __version__


def run_podcap(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "podcap", *args], capture_output=True, text=True, timeout=60
    )


def test_version_prints_the_package_version():
    result = run_podcap("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"podcap {__version__}"


def test_help_lists_commands_and_is_fast():
    run_podcap("--help")  # warm the bytecode cache
    started = time.perf_counter()
    result = run_podcap("--help")
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


def test_unknown_flag_exits_2_without_traceback():
    result = run_podcap("--no-such-flag")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
