"""An image's pixel dimensions read from its header, so a decompression bomb is refused unread.

A PNG of one colour at 16000x16000 is a few kilobytes and decodes to ~1 GB of pixels (~3 GB as
float32 in the embedder). Every place that decodes an image from outside (the image fetcher, hence
the embed stage; the similarity API's and the web UI's uploads) first asks :func:`check_pixels`,
which reads only the header bytes: PNG ``IHDR``, the JPEG ``SOFn`` segment, the GIF logical
screen and every frame descriptor, WebP ``VP8 ``/``VP8L``/``VP8X``, BMP ``BITMAPINFOHEADER``.
Nothing here decodes pixel data. An image whose header cannot be read is left to the decoder,
which rejects it (it cannot know a size either).
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = ["ImageTooLargeError", "check_pixels", "image_size"]

# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); not DHT/JPG/DAC.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers without a length field.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


#: The default of ``PRODCAT_IMAGES__MAX_PIXELS``: the largest width * height accepted.
DEFAULT_MAX_PIXELS: Final = 40_000_000


class ImageTooLargeError(ValueError):
    """The header announces more pixels than allowed (the caller maps it to its own error)."""

    def __init__(self, width: int, height: int, limit: int) -> None:
        super().__init__(f"{width}x{height} = {width * height} pixels > {limit} allowed")
        self.width, self.height, self.limit = width, height, limit


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the header of a PNG, JPEG, GIF, WebP or BMP; ``None`` when the
    format is unknown or the header is truncated. For a GIF, the largest of the logical screen
    and every frame."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n"):
            if data[12:16] != b"IHDR":
                return None
            width, height = struct.unpack(">II", data[16:24])
            return int(width), int(height)
        if data.startswith(b"\xff\xd8"):
            return _jpeg_size(data)
        if data.startswith((b"GIF87a", b"GIF89a")):
            return _gif_size(data)
        if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
            return _webp_size(data)
        if data.startswith(b"BM"):
            return _bmp_size(data)
    except (struct.error, IndexError):
        return None
    return None


def check_pixels(data: bytes, limit: int) -> tuple[int, int] | None:
    """The header's ``(width, height)`` (``None`` when unreadable); raise
    :class:`ImageTooLargeError` when ``width * height`` exceeds ``limit``."""
    size = image_size(data)
    if size is not None and size[0] * size[1] > limit:
        raise ImageTooLargeError(size[0], size[1], limit)
    return size


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before it
            return None
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(width), int(height)
        i += 2 + length
    return None


def _gif_size(data: bytes) -> tuple[int, int] | None:
    width, height = struct.unpack("<HH", data[6:10])
    flags = data[10]
    i = 13
    if flags & 0x80:  # global colour table
        i += 3 * (2 ** ((flags & 7) + 1))
    n = len(data)
    while i < n:
        block = data[i]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: label, then sub-blocks
            i = _skip_sub_blocks(data, i + 2)
        elif block == 0x2C:  # image descriptor: left, top, width, height, flags
            left, top, w, h = struct.unpack("<HHHH", data[i + 1 : i + 9])
            width, height = max(width, left + w), max(height, top + h)
            local = data[i + 9]
            i += 10
            if local & 0x80:
                i += 3 * (2 ** ((local & 7) + 1))
            i = _skip_sub_blocks(data, i + 1)  # LZW minimum code size, then the data
        else:
            break
    return int(width), int(height)


def _skip_sub_blocks(data: bytes, i: int) -> int:
    while i < len(data) and data[i]:
        i += data[i] + 1
    return i + 1


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: after a 3-byte frame tag and the start code 9d 01 2a
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", data[26:30])
        return int(width & 0x3FFF), int(height & 0x3FFF)
    if chunk == b"VP8L":  # lossless: signature 0x2f, then 14-bit width-1 and height-1
        if data[20] != 0x2F:
            return None
        (bits,) = struct.unpack("<I", data[21:25])
        return int((bits & 0x3FFF) + 1), int(((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":  # extended: 24-bit canvas width-1 and height-1
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        if len(data) < 30:
            return None
        return width, height
    return None


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:
        width, height = struct.unpack("<HH", data[18:22])
        return int(width), int(height)
    if header >= 40:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(int(width)), abs(int(height))
    return None
