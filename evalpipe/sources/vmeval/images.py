"""Image checks by signature and structure, reading headers only (never a whole file)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_START = b"\xff\xd8\xff"
JPEG_END = b"\xff\xd9"
MAX_PNG_CHUNKS = 100_000


def image_problem(path: Path) -> str | None:
    """Why `path` is not a usable PNG or JPEG, or None when it is: empty, unknown signature, or
    truncated (a PNG whose chunks run past the end or stop before IEND; a JPEG without its end
    marker)."""
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                return "empty file"
            head = handle.read(8)
            if head == PNG_SIGNATURE:
                return _png_problem(handle, size)
            if head.startswith(JPEG_START):
                handle.seek(max(size - 2, 0))
                return None if handle.read(2) == JPEG_END else "truncated JPEG (no end marker)"
            return f"not a PNG or JPEG (starts with {head[:8].hex()})"
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"


def _png_problem(handle, size: int) -> str | None:
    """Walk the chunk headers by seeking: IHDR first (13 bytes), every chunk inside the file,
    IEND present."""
    offset = 8
    for number in range(MAX_PNG_CHUNKS):
        handle.seek(offset)
        header = handle.read(8)
        if len(header) < 8:
            return "truncated PNG (no IEND chunk)"
        length, kind = struct.unpack(">I4s", header)
        if number == 0 and (kind != b"IHDR" or length != 13):
            return "malformed PNG (first chunk is not a 13-byte IHDR)"
        offset += 12 + length
        if offset > size:
            return f"truncated PNG ({kind.decode('latin-1')} chunk runs past the end)"
        if kind == b"IEND":
            return None
    return "malformed PNG (too many chunks)"
