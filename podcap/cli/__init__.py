"""The ``podcap`` command: parses flags and calls the library, nothing more.

Each command lives in its own module and registers itself on ``app``. Command modules import
only typer at module level; the library (pandas, kubernetes, ...) is imported inside the
command function, so ``podcap --help`` never pays for it.

``main`` is the one error boundary: a :class:`podcap.errors.PodcapError` becomes a single
``podcap: error: ...`` line on stderr and exit status 2. Anything else is a bug and keeps
its traceback.
"""

import sys

import typer

from podcap import __version__
from podcap.errors import PodcapError

app = typer.Typer(
    name="podcap",
    help="Capture packets inside Kubernetes Pods and analyze them with pandas.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)

EXIT_ERROR = 2


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
    """Capture packets inside Kubernetes Pods and analyze them with pandas."""


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


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app and map library errors to exit status 2."""
    _register_commands()
    try:
        app(args=argv, prog_name="podcap", standalone_mode=True)
    except PodcapError as exc:
        error(str(exc))
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        error("interrupted")
        sys.exit(130)
