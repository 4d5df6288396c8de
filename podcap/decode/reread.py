"""Reading a capture's bytes again, at the offsets the packet table keeps (``file_off``).

The packet table holds no payloads (it would double the memory a capture takes). The few
steps that need bytes after decoding, such as an HTTP message starting in the middle of a
segment (``podcap.flows.messages``), read them here: a plain file with ``pread``, a gzip one
from a copy decompressed on the first read. A capture read from a pipe cannot be read again:
``reopen`` then gives None and those steps make do with what the decoder kept.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from podcap.decode.source import GZIP_MAGIC


class Rereader:
    """Bytes of one capture file by offset (in its decompressed bytes when gzip'd)."""

    def __init__(self, path: Path, gzipped: bool):
        self.path = path
        self.gzipped = gzipped
        self._fd: int | None = None
        self._copy: Path | None = None

    def read(self, offset: int, size: int) -> bytes:
        if self._fd is None:
            self._fd = os.open(self._decompressed() if self.gzipped else self.path, os.O_RDONLY)
        return os.pread(self._fd, size, offset)

    def _decompressed(self) -> Path:
        handle, name = tempfile.mkstemp(prefix="podcap-reread-", suffix=".pcap")
        self._copy = Path(name)
        with os.fdopen(handle, "wb") as out, gzip.open(self.path, "rb") as source:
            with contextlib.suppress(EOFError, OSError):  # a cut gzip: what it held is enough
                shutil.copyfileobj(source, out, 1 << 20)
        return self._copy

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._copy is not None:
            self._copy.unlink(missing_ok=True)
            self._copy = None


@contextlib.contextmanager
def reopen(path: str | Path | None) -> Iterator[Rereader | None]:
    """A Rereader for ``path``, closed (and its decompressed copy deleted) on leaving; None
    when the capture cannot be read again (a pipe, standard input, a file gone since, no
    path)."""
    if path is None:
        yield None
        return
    path = Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            yield None
            return
        with open(path, "rb") as probe:
            gzipped = probe.read(2) == GZIP_MAGIC
    except OSError:
        yield None
        return
    reader = Rereader(path, gzipped)
    try:
        yield reader
    finally:
        reader.close()
