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
import mmap
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from podcap.decode.bytesview import ByteView
from podcap.decode.source import GZIP_MAGIC


class Rereader:
    """Bytes of one capture file by offset (in its decompressed bytes when gzip'd)."""

    def __init__(self, path: Path, gzipped: bool):
        self.path = path
        self.gzipped = gzipped
        self._fd: int | None = None
        self._copy: Path | None = None
        self._mapped: mmap.mmap | None = None

    def read(self, offset: int, size: int) -> bytes:
        if self._fd is None:
            self._fd = os.open(self._decompressed() if self.gzipped else self.path, os.O_RDONLY)
        return os.pread(self._fd, size, offset)

    def view(self) -> ByteView:
        """The whole (decompressed) file as a ByteView over a read-only mapping: fields of
        many packets gathered at once, the pages read as they are touched."""
        if self._mapped is None:
            with open(self._decompressed() if self.gzipped else self.path, "rb") as file:
                # Mapped at once (MAP_POPULATE): one call instead of a fault per page touched.
                flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
                self._mapped = mmap.mmap(file.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
        return ByteView(self._mapped)

    def _decompressed(self) -> Path:
        if self._copy is not None:
            return self._copy
        handle, name = tempfile.mkstemp(prefix="podcap-reread-", suffix=".pcap")
        self._copy = Path(name)
        with os.fdopen(handle, "wb") as out, gzip.open(self.path, "rb") as source:
            with contextlib.suppress(EOFError, OSError):  # a cut gzip: what it held is enough
                shutil.copyfileobj(source, out, 1 << 20)
        return self._copy

    def close(self) -> None:
        if self._mapped is not None:
            with contextlib.suppress(BufferError):  # a view still held keeps it mapped
                self._mapped.close()
            self._mapped = None
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
