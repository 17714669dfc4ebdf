"""Hand-made zip archives for the archive-limit tests and bench/upload_limits.py: bombs and lying headers.

zipfile cannot write one deflated stream under many names, nor a header that lies about its size; these are written
byte by byte (local headers, data, central directory, end record), as an attacker's tool would.
"""
from __future__ import annotations

import io
import struct
import zlib


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def raw_zip(members: list[tuple[str, bytes, int, int]]) -> bytes:
    """members: (name, deflated data, crc32, declared uncompressed size) -> the bytes of a zip holding them."""
    out = io.BytesIO()
    central = []
    for name, comp, crc, size in members:
        offset = out.tell()
        fname = name.encode()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(comp), size, len(fname), 0))
        out.write(fname)
        out.write(comp)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(comp), size,
                                   len(fname), 0, 0, 0, 0, 0o100644 << 16, offset) + fname)
    start = out.tell()
    for c in central:
        out.write(c)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), out.tell() - start, start, 0))
    return out.getvalue()


def bomb_zip(members: int = 120, member_bytes: int = 24 * 2**20, suffix: str = ".png") -> bytes:
    """Issue 15's archive: `members` entries of `member_bytes` zeros each (2.9 GB declared in a ~3 MB zip by default)."""
    zeros = bytes(member_bytes)
    comp, crc = _deflate(zeros), zlib.crc32(zeros)
    return raw_zip([(f"zeros/{i:04d}{suffix}", comp, crc, member_bytes) for i in range(members)])


def lying_zip(name: str, real: bytes, declared: int) -> bytes:
    """One member whose headers declare `declared` bytes while its stream inflates to len(real)."""
    return raw_zip([(name, _deflate(real), zlib.crc32(real), declared)])
