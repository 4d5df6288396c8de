"""The ``podcap`` command: parses flags and calls the library, nothing more.

Each command lives in its own module and registers itself on ``app``. Command modules import
only typer at module level; the library (pandas, kubernetes, ...) is imported inside the
command function, so ``podcap --help`` never pays for it.

``main`` is the one error boundary: a :class:`podcap.errors.PodcapError` becomes a single
``podcap: error: ...`` line on stderr and exit status 2. Anything else is a bug: one line too,
naming the exception, with exit status 2; ``--debug`` (anywhere before ``--``) or
``PODCAP_DEBUG=1`` shows its traceback instead.
"""

import functools
import os
import signal
import sys
from enum import IntEnum

import typer
import typer.main

from podcap import signals
from podcap.errors import PodcapError
from podcap.version import __version__

app = typer.Typer(
    name="podcap",
    help="Capture packets inside Kubernetes Pods and analyze them with pandas.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
DEBUG_FLAG = "--debug"


class ExitStatus(IntEnum):
    """What ``podcap`` exits with."""

    OK = 0
    NOTHING_MATCHED = 1  # analyze: the filter matched no packet (as grep)
    ERROR = 2  # a PodcapError, a usage error, or (analyze) an unreadable file
    INTERRUPTED = 128 + signal.SIGINT  # Ctrl-C, as a shell reports it
    SIGPIPE = 128 + signal.SIGPIPE  # stdout's reader left (`podcap analyze ... | head`)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"podcap {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Capture packets inside Kubernetes Pods and analyze them with pandas.

    Add --debug anywhere (before --) to see the traceback of an unexpected error.
    """


def _register_commands() -> None:
    # Each module adds its command(s) to ``app`` when imported. Listed here so that a
    # command appears only once its module exists and works.
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def error(message: str) -> None:
    """Print one error line the way every podcap command does."""
    print(f"podcap: error: {message}", file=sys.stderr)


def warn(message: str) -> None:
    """Print one warning line on stderr."""
    print(f"podcap: warning: {message}", file=sys.stderr)


class ReaderLeft(Exception):
    """stdout's reader went away (`podcap analyze ... | head`). Raised instead of the
    BrokenPipeError itself, which click would turn into exit status 1 ("nothing matched")."""


def render_reports(reports, fmt: str, output: str | None, **options) -> None:
    """``podcap.render.render`` for a command: a reader leaving early ends it as ``main`` says."""
    from podcap.render import render

    try:
        render(reports, fmt, output, **options)
    except BrokenPipeError as exc:
        raise ReaderLeft from exc


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app and map every error to one line on stderr."""
    signals.install()  # whatever the parent did (started with &: SIGINT ignored)
    _register_commands()
    argv, debug = _debug_flag(sys.argv[1:] if argv is None else list(argv))
    try:
        sys.exit(_run(argv, debug or os.environ.get("PODCAP_DEBUG") == "1"))
    except (BrokenPipeError, ReaderLeft):
        # `podcap analyze ... | head`: the reader left. End quietly, as a SIGPIPE'd tool does,
        # and keep Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(ExitStatus.SIGPIPE)


_ENDING = {"at_once": False}


def end_at_once() -> None:
    """For a command whose work is done and left nothing open (no thread, process or file
    still to finish): ``console`` may end the process as soon as it returns."""
    _ENDING["at_once"] = True


def console() -> None:
    """The ``podcap`` command (console script, ``python -m podcap``): ``main``, and after a
    command that asked for it (``end_at_once``), the process ends without Python's own
    clean-up, which only empties modules and frees memory the kernel frees anyway: with pandas
    and pyarrow loaded it takes 0.1-0.2 s, as long as analyzing a small capture."""
    try:
        main()
    except SystemExit as exc:
        if not _ENDING["at_once"]:
            raise
        status = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:  # the reader left before the last bytes
            status = ExitStatus.SIGPIPE
        os._exit(status)


def _debug_flag(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--debug``, and whether it was there; after ``--`` the words are a
    command's own (``podcap netns POD -- tool --debug``) and left alone."""
    end = argv.index("--") if "--" in argv else len(argv)
    if DEBUG_FLAG not in argv[:end]:
        return argv, False
    return [word for word in argv[:end] if word != DEBUG_FLAG] + argv[end:], True


# Metavars that read as words (``-o FILE``, ``-l SELECTOR``) for the options that name none:
# this typer spells a value's type instead (``<str>``). Keyed by the option's parameter name.
METAVARS = {
    "output": "PATH", "container": "NAME", "container_id": "ID", "context": "NAME",
    "count": "N", "facts": "FILE", "iptables": "FILE", "masq_config": "FILE", "kubeconfig": "FILE",
    "rules_dir": "DIR", "ssh_key": "FILE", "ssh_option": "KEY=VALUE", "ssh_port": "PORT",
    "ssh_user": "USER", "pid": "PID", "node_pid": "PID", "max_size": "SIZE", "max_rows": "N",
    "snaplen": "BYTES", "selector": "SELECTOR", "namespace": "NAMESPACE", "node": "HOST",
    "helper_namespace": "NAMESPACE", "image": "IMAGE", "image_pull_secret": "SECRET",
    "interface": "IFACE", "node_interface": "IFACE", "bpf_filter": "BPF",
    "display_filter": "FILTER", "contains": "TEXT", "uri": "PATH", "output_format": "FORMAT",
    "report": "REPORT", "engine": "ENGINE", "pod_cidr": "CIDR", "service_cidr": "CIDR",
    "node_ip": "IP", "session": "ID",
}  # fmt: skip


class _Signalled(Exception):  # noqa: N818 - carries the signal past click
    """A command ended by SIGINT/SIGTERM. click turns a KeyboardInterrupt into Abort (and a
    blank line on stderr), losing which signal it was: each command's own raises this."""

    def __init__(self, interrupted: signals.Interrupted):
        super().__init__(interrupted.reason)
        self.interrupted = interrupted


def _signals_carried(callback):
    @functools.wraps(callback)
    def call(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except signals.Interrupted as exc:
            raise _Signalled(exc) from exc

    return call


def _command():
    """The click command typer builds from ``app``, its options' metavars spelled as words."""
    command = typer.main.get_command(app)
    for sub in getattr(command, "commands", {}).values():
        sub.callback = _signals_carried(sub.callback)
        for param in sub.params:
            if getattr(param, "metavar", "") is None and param.name in METAVARS:
                param.metavar = METAVARS[param.name]
    return command


def _prog_name() -> str:
    """``kubectl podcap`` when kubectl runs us as its plugin ``kubectl-podcap``."""
    invoked = os.path.basename(sys.argv[0]) if sys.argv else ""
    return "kubectl podcap" if invoked.startswith("kubectl-podcap") else "podcap"


def _run(argv: list[str], debug: bool = False) -> int:
    try:
        status = _command().main(args=argv, prog_name=_prog_name(), standalone_mode=False)
    except PodcapError as exc:
        error(str(exc))
        return ExitStatus.ERROR
    except typer.TyperException as exc:
        # click's own usage errors (unknown flag, missing argument, bad value) come here
        # because standalone mode is off: one line instead of click's usage block.
        return _usage_error(exc)
    except _Signalled as exc:
        error(exc.interrupted.reason)
        return exc.interrupted.exit_status
    except (KeyboardInterrupt, typer.Abort):
        error("interrupted")
        return ExitStatus.INTERRUPTED
    except (BrokenPipeError, ReaderLeft):
        raise
    except Exception as exc:
        if debug:
            raise
        first = (str(exc).splitlines() or [""])[0]
        error(f"unexpected {type(exc).__name__}: {first} (a bug in podcap: rerun with --debug "
              "for the traceback, and please report it)")  # fmt: skip
        return ExitStatus.ERROR
    return status if isinstance(status, int) else ExitStatus.OK


def _usage_error(exc: typer.TyperException) -> int:
    if type(exc).__name__ == "NoArgsIsHelpError":
        # `podcap` alone: click carries the help text in this error; show it as help.
        print(exc.format_message())
        return ExitStatus.OK
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    ctx = getattr(exc, "ctx", None)
    where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    error(f"{message}{where}")
    return getattr(exc, "exit_code", ExitStatus.ERROR)
