"""Compressed input files: decompression by suffix, with truncation and corruption as `BadFile`."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import zstandard

COMPRESSIONS = (".gz", ".bz2", ".zst", ".xz")
# What reading a truncated or corrupt compressed stream raises (gzip, bz2: EOFError/OSError; xz: LZMAError).
READ_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError)


class BadFile(ValueError):
    """A whole input file is unreadable; the message names it."""


class _ZstdFrames(io.RawIOBase):
    """Decompresses every zstd frame of a stream and notices truncation.

    `zstandard`'s stream_reader returns a truncated stream's data without any error, which would
    silently lose the rest of a file, so frames are decoded with `decompressobj` and the end of the
    stream must fall on a frame boundary.
    """

    def __init__(self, raw: BinaryIO, name: str):
        self._raw, self._name = raw, name
        self._dctx = zstandard.ZstdDecompressor()
        self._dobj = self._dctx.decompressobj()
        self._in_frame = False
        self._buffer, self._offset = b"", 0
        self._done = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        while self._offset >= len(self._buffer) and not self._done:
            self._buffer, self._offset = b"", 0
            data = self._raw.read(1 << 20)
            if not data:
                self._done = True
                if self._in_frame:
                    raise BadFile(f"{self._name}: truncated zstd stream (file ends inside a frame)")
                return
            while data:
                try:
                    self._buffer += self._dobj.decompress(data)
                except zstandard.ZstdError as exc:
                    raise BadFile(f"{self._name}: corrupt zstd data ({exc})") from None
                self._in_frame = not self._dobj.eof
                if self._dobj.eof:
                    data = self._dobj.unused_data
                    self._dobj = self._dctx.decompressobj()
                else:
                    data = b""

    def readinto(self, target) -> int:
        self._fill()
        size = min(len(target), len(self._buffer) - self._offset)
        target[:size] = self._buffer[self._offset : self._offset + size]
        self._offset += size
        return size


def decompressed(raw: BinaryIO, name: str) -> BinaryIO:
    """A buffered binary stream of the file's content, decompressed by its suffix."""
    lower = name.lower()
    if lower.endswith(".zst"):
        return io.BufferedReader(_ZstdFrames(raw, name), buffer_size=1 << 20)
    if lower.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if lower.endswith(".bz2"):
        return bz2.BZ2File(raw, mode="rb")
    if lower.endswith(".xz"):
        return lzma.LZMAFile(raw, mode="rb")
    return raw


class Prepended(io.RawIOBase):
    """`head` (bytes already read for encoding detection) followed by the rest of `rest`."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head, self._rest, self._offset = head, rest, 0

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        if self._offset < len(self._head):
            size = min(len(target), len(self._head) - self._offset)
            target[:size] = self._head[self._offset : self._offset + size]
            self._offset += size
            return size
        data = self._rest.read(len(target))
        target[: len(data)] = data
        return len(data)


def lines_of(stream: BinaryIO, name: str) -> Iterator[tuple[int, bytes]]:
    try:
        for number, line in enumerate(stream, 1):
            yield number, line
    except READ_ERRORS as exc:
        raise BadFile(f"{name}: corrupt or truncated compressed data ({exc})") from None
