"""Running tshark over a file through pyshark's ``FileCapture`` (PDML), for both tshark paths.

They are ``--engine tshark`` (``podcap.decode.tshark_engine``) and the display-filter fallback
(``podcap.dfilter.tshark_fallback``). A module of its own so that importing the filters does
not import pyshark (0.08 s)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import lxml.objectify
import pyshark
from pyshark.tshark.output_parser import tshark_xml

from podcap.tshark import DECODE_AS, tshark_path


class TsharkFile(pyshark.FileCapture):
    """pyshark's FileCapture over a whole file that lets tshark finish and keeps what it said.

    pyshark 0.6 kills tshark when the packets end unless tshark has already exited: the exit
    status (a bad filter, a file cut short) is then lost, and killing a process that has just
    exited races with asyncio's child watcher, which logs "Unknown child process" on stderr and
    reports status 255. Reading a file, tshark is done once its output has ended, so this waits
    for it instead. pyshark also keeps only tshark's last stderr line (for a bad filter, the
    caret under the culprit); this keeps them all. Both are overrides of pyshark internals.
    """

    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop, parameters: list[str]):
        self.stderr_lines: list[str] = []
        self.exit_status: int | None = None
        super().__init__(
            str(path),
            keep_packets=False,
            decode_as=DECODE_AS,
            # The tshark on PATH, explicitly: pyshark's own search also tries its config.ini's
            # /usr/bin/tshark, so "tshark is not installed" would never be true.
            tshark_path=tshark_path(),
            eventloop=loop,
            custom_parameters=parameters or None,
        )

    def _setup_tshark_output_parser(self):
        return PdmlParser()

    async def _handle_process_stderr_forever(self, stderr):
        while line := await stderr.readline():
            self.stderr_lines.append(line.decode(errors="replace").rstrip())

    async def _cleanup_subprocess(self, process):
        if process.returncode is None and not self._eof_reached:
            # Stopped before the end (an error while reading a packet): stop tshark too.
            try:
                process.kill()
            except ProcessLookupError:
                pass
        self.exit_status = await process.wait()


# What pyshark deletes from each packet's XML before parsing it, as XML does not allow them:
# ASCII control characters other than tab, LF and CR (one byte each in UTF-8), surrogates
# (never in valid UTF-8) and the non-characters U+FFFE and U+FFFF.
XML_CONTROL_BYTES = bytes(b for b in range(0x20) if b not in (0x09, 0x0A, 0x0D))
NONCHARACTERS = ("\ufffe".encode(), "\uffff".encode())


class PdmlParser(tshark_xml.TsharkXmlParser):
    """pyshark's PDML parser, with its clean-up of each packet's XML done on bytes.

    pyshark decodes every packet's XML (about 17 kB) and deletes the characters XML does not
    allow with ``str.translate`` over a table of 10,000 code points, one character at a
    time: 40 % of the tshark engine's time (bench/tshark_engine.py). For valid UTF-8 without
    the two non-characters (nearly every packet) the same deletion is one ``bytes.translate``
    and lxml reads the bytes pyshark would have encoded again; any other packet goes through
    pyshark's own code. The packet objects are the same either way.
    """

    PARSER = lxml.objectify.makeparser(huge_tree=True, recover=True, encoding="utf-8")

    def _parse_single_packet(self, packet: bytes):
        cleaned = packet.translate(None, XML_CONTROL_BYTES)
        try:
            cleaned.decode("utf-8")
        except UnicodeDecodeError:
            return super()._parse_single_packet(packet)
        if any(bad in cleaned for bad in NONCHARACTERS):
            return super()._parse_single_packet(packet)
        return tshark_xml._packet_from_pdml_packet(lxml.objectify.fromstring(cleaned, self.PARSER))


def read_packets(
    path: Path, on_packet: Callable[[object], None], parameters: list[str] = ()
) -> TsharkFile:
    """Run tshark over ``path`` through pyshark, ``on_packet`` called with each packet.

    ``parameters``: extra tshark arguments. Returns the finished run: ``exit_status`` and
    ``stderr_lines`` tell what tshark thought of the file. The event loop pyshark runs on is
    this call's own and is closed, with tshark gone, when it returns.
    """
    loop = asyncio.new_event_loop()
    try:
        run = TsharkFile(path, loop, list(parameters))
        run.apply_on_packets(on_packet)  # ends by waiting for tshark (TsharkFile)
        return run
    finally:
        loop.close()
