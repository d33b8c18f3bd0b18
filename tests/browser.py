"""Render a page in a real headless browser (Debian's chromium) and read the PNG it makes.

Used by tests/unit/test_report_browser.py and by tests/report_samples/screenshots.py (the README's
pictures). Chromium runs without network-facing services, in a fresh empty profile each time.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]
TIMEOUT = 120


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(page: Path, *args: str) -> str:
    binary = chromium()
    if binary is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="lw-chromium-") as profile:
        done = subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
                              capture_output=True, text=True, timeout=TIMEOUT, check=True)
    return done.stdout


def dump_dom(page: Path) -> str:
    """The document after the browser parsed and laid it out."""
    return _run(page, "--dump-dom")


def screenshot(page: Path, png: Path, *, width: int = 1100, height: int = 1400) -> None:
    _run(page, f"--screenshot={png.resolve()}", f"--window-size={width},{height}")


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    pixels: list[bytes]
    """One row of RGB triples per line."""

    def colours(self) -> set[tuple[int, int, int]]:
        return {tuple(row[i:i + 3]) for row in self.pixels for i in range(0, len(row), 3)}  # type: ignore[misc]


def read_png(path: Path) -> Image:
    """Decode an 8-bit RGB or RGBA, non-interlaced PNG (what chromium writes) into RGB rows."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat = 8, b""
    width = height = colour = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            if depth != 8 or colour not in (2, 6) or interlace:
                raise ValueError("unsupported PNG: 8-bit RGB or RGBA, not interlaced, only")
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        kind, row = line[0], bytearray(line[1:])
        for i in range(stride):
            left = row[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                row[i] = (row[i] + left) & 0xFF
            elif kind == 2:
                row[i] = (row[i] + up) & 0xFF
            elif kind == 3:
                row[i] = (row[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                row[i] = (row[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        previous = row
        rows.append(bytes(row) if channels == 3 else bytes(b for i, b in enumerate(row) if i % 4 != 3))
    return Image(width=width, height=height, pixels=rows)
