"""Decompression bombs are refused from the image header, before anything is decoded."""

from __future__ import annotations

import io
import resource
import struct
import zlib
from functools import cache
from pathlib import Path

import pytest

from prodcat.core.image_header import ImageTooLargeError, check_pixels, image_size
from prodcat.core.settings import ImageSettings
from prodcat.serving.exceptions import ImageFetchError
from prodcat.serving.image_fetch import ImageFetcher

LIMIT = ImageSettings().max_pixels


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@cache
def png_bomb(side: int = 16000) -> bytes:
    """A valid greyscale PNG of one colour, ``side``x``side``: a few hundred KB on the wire,
    ``side²`` bytes (x3 as RGB, x12 as float32 RGB) once decoded. Compressed row by row."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte 0, then black pixels
    parts = [compressor.compress(row) for _ in range(side)]
    idat = b"".join(parts) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def test_a_16000x16000_png_under_1mb_is_refused_without_decoding() -> None:
    bomb = png_bomb()
    assert len(bomb) < 1024 * 1024
    before = _max_rss_mb()
    with pytest.raises(ImageTooLargeError, match="16000x16000"):
        check_pixels(bomb, LIMIT)
    assert _max_rss_mb() - before < 20, "the check must not decode the image"


def test_header_sizes_match_pillow_for_every_format() -> None:
    image_module = pytest.importorskip("PIL.Image")
    for fmt, mode in [("PNG", "RGB"), ("JPEG", "RGB"), ("GIF", "P"), ("BMP", "RGB")]:
        buffer = io.BytesIO()
        image_module.new(mode, (321, 123)).save(buffer, format=fmt)
        assert image_size(buffer.getvalue()) == (321, 123), fmt
    for lossless in (False, True):
        buffer = io.BytesIO()
        try:
            image_module.new("RGB", (321, 123)).save(buffer, format="WEBP", lossless=lossless)
        except (KeyError, OSError):
            pytest.skip("Pillow without WebP")
        assert image_size(buffer.getvalue()) == (321, 123), f"webp lossless={lossless}"
    assert image_size(png_bomb(64)) == (64, 64)
    assert image_size(b"not an image") is None
    assert image_size(b"\x89PNG\r\n\x1a\n") is None  # truncated: left to the decoder


def test_a_gif_frame_larger_than_its_screen_counts() -> None:
    screen = b"GIF89a" + struct.pack("<HHBBB", 10, 10, 0, 0, 0)
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 20000, 20000, 0) + b"\x02\x02\x44\x01\x00"
    assert image_size(screen + frame + b"\x3b") == (20000, 20000)


def test_a_real_jpeg_is_within_the_limit(data_dir: Path) -> None:
    jpeg = (data_dir / "myntra" / "images" / "10008.jpg").read_bytes()
    size = check_pixels(jpeg, LIMIT)
    assert size is not None and 0 < size[0] * size[1] <= LIMIT


async def test_the_fetcher_dead_letters_a_pixel_bomb_as_too_large_pixels(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(png_bomb())
    settings = ImageSettings(file_roots=(tmp_path,))
    before = _max_rss_mb()
    async with ImageFetcher(settings) as fetcher:
        with pytest.raises(ImageFetchError) as refused:
            await fetcher.fetch(f"file://{tmp_path}/bomb.png")
    assert refused.value.kind == "too_large_pixels"  # the embed stage's image_too_large_pixels
    assert _max_rss_mb() - before < 20
