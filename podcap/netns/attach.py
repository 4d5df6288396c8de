"""Run an argv on the node with the user's terminal (``podcap netns``), through any transport."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator

from podcap.errors import CaptureError, UsageError


def exit_status(returncode: int) -> int:
    """A child's status as a shell reports it: killed by signal N gives 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def attach(transport, argv: list[str], tty: bool) -> int:
    """Run ``argv`` on the node with this process's stdin, stdout and stderr, as ``kubectl
    exec`` does; ``tty`` asks for a terminal on the node (ssh -t; exec with tty). Returns the
    command's exit status (128+N when a signal N ended it)."""
    if transport.name == "local":
        return _run_attached(argv)
    if transport.name == "ssh":
        return _run_attached(transport.argv_for(argv, tty=tty))
    if transport.name == "pod":
        return _attach_exec(transport, argv, tty)
    raise UsageError(f"cannot attach a terminal through transport {transport.name!r}")


def _run_attached(argv: list[str]) -> int:
    """A local child on our terminal. While it runs, Ctrl-C is the child's alone (as in ssh,
    where it is a byte sent to the node), so podcap neither dies first nor leaves it behind.
    A Python handler (not SIG_IGN) does that: the child's exec resets it to the default."""
    import signal
    import subprocess

    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        child = subprocess.Popen(argv)
        return exit_status(child.wait())
    except FileNotFoundError as exc:
        raise CaptureError(f"{argv[0]} not found on this machine") from exc
    finally:
        signal.signal(signal.SIGINT, previous)


def _attach_exec(transport, argv: list[str], tty: bool) -> int:
    """Through the helper Pod's exec stream: our stdin goes on (EOF closes the node side's stdin
    under v5.channel.k8s.io), stdout and stderr come back as they arrive. With ``tty`` the exec
    gets a terminal on the node, ours goes raw and its size follows ours (resize channel)."""
    import select
    import threading

    process = transport.start(argv, tty=tty)
    with _raw_terminal(process) if tty else contextlib.nullcontext():
        threading.Thread(target=_send_stdin, args=(process,), daemon=True).start()
        shown, out = 0, process.stdout.fileno()
        while True:
            ready, _, _ = select.select([out], [], [], 0.2)
            shown = _show_new_stderr(process, shown)
            if not ready:
                continue
            chunk = os.read(out, 65536)
            if not chunk:
                break
            os.write(1, chunk)
        status = process.wait(30)
        _show_new_stderr(process, shown)
    return exit_status(status)


@contextlib.contextmanager
def _raw_terminal(process) -> Iterator[None]:
    """Our terminal in raw mode (keys, Ctrl-C included, go to the node as typed), its size
    sent now and on every SIGWINCH; restored on the way out."""
    import signal
    import termios
    import tty

    if not os.isatty(0):
        yield
        return
    saved = termios.tcgetattr(0)
    previous = signal.signal(signal.SIGWINCH, lambda signum, frame: _send_size(process))
    try:
        tty.setraw(0)
        _send_size(process)
        yield
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)


def _send_size(process) -> None:
    from websocket import WebSocketException

    from podcap.reach.pod.channels import RESIZE

    with contextlib.suppress(OSError, ValueError, WebSocketException):
        size = os.get_terminal_size(0)
        message = json.dumps({"Width": size.columns, "Height": size.lines}).encode()
        process.ws.write_channel(RESIZE, message)


def _send_stdin(process) -> None:
    from websocket import WebSocketException

    from podcap.reach.pod.channels import STDIN

    with contextlib.suppress(OSError, ValueError, WebSocketException):
        while data := os.read(0, 65536):
            process.ws.write_stdin(data)
    with contextlib.suppress(OSError, ValueError, WebSocketException):
        process.ws.close_channel(STDIN)


def _show_new_stderr(process, shown: int) -> int:
    """Pass on what the command wrote on stderr since last time (it arrives in a buffer)."""
    text = process.stderr_text()
    if len(text) > shown:
        os.write(2, text[shown:].encode())
    return len(text)
