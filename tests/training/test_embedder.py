"""The exported image embedder: TF Serving layout, card, and the bytes → embedding signature."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from prodcat.core.image_header import DEFAULT_MAX_PIXELS  # noqa: E402
from prodcat.training.embedder import (  # noqa: E402
    EMBEDDING_DIM,
    EmbedderError,
    build_embedder,
    bytes_embedder,
    embed_files,
    export_embedder,
    header_pixels,
)

pytestmark = pytest.mark.integration

IDS = ("1550", "1551", "1552")
SIZE = 96  # small for speed; the layout and the signature do not depend on it


@pytest.fixture(scope="module")
def weights(data_dir: Path) -> Path:
    return data_dir / "weights" / "mobilenet_v2_0.35_224_no_top.weights.h5"


@pytest.fixture(scope="module")
def jpegs(data_dir: Path) -> list[bytes]:
    return [(data_dir / "myntra" / "images" / f"{i}.jpg").read_bytes() for i in IDS]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, weights: Path) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("models")
    path = export_embedder(weights=weights, base_dir=base, card={"note": "test"}, image_size=SIZE)
    return base, path


@pytest.fixture(scope="module")
def signature(exported: tuple[Path, Path]) -> Any:
    loaded = tf.saved_model.load(str(exported[1]))
    sig = loaded.signatures["serving_default"]
    sig._loaded = loaded  # keep the trackable alive for the module
    return sig


def embed(signature: Any, images: list[bytes]) -> np.ndarray:
    out = signature(image_bytes=tf.constant(images, dtype=tf.string))
    return np.asarray(out["embedding"])


def test_layout_card_and_config(exported: tuple[Path, Path], weights: Path) -> None:
    base, path = exported
    assert path == base / "image_embedder" / "1"
    assert (path / "saved_model.pb").is_file()
    card = json.loads((path / "model_card.json").read_text())
    assert card["name"] == "image_embedder"
    assert card["version"] == 1
    assert card["dim"] == EMBEDDING_DIM
    assert card["image_size"] == SIZE
    assert card["max_pixels"] == DEFAULT_MAX_PIXELS
    assert card["weights"] == weights.name
    assert card["note"] == "test"
    assert isinstance(card["exported_at"], int)
    config = (base / "models.config").read_text()
    assert 'name: "image_embedder"' in config
    assert not list((base / "image_embedder").glob(".*partial"))


def test_signature_shapes_and_unit_norm(signature: Any, jpegs: list[bytes]) -> None:
    assert list(signature.structured_input_signature[1]) == ["image_bytes"]
    emb = embed(signature, jpegs)
    assert emb.shape == (len(jpegs), EMBEDDING_DIM)
    assert emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(emb[0], emb[1])


def test_same_image_twice_gives_the_same_vector(signature: Any, jpegs: list[bytes]) -> None:
    """The same to float rounding: oneDNN may split a sum differently for two rows of a batch when
    the machine is busy (seen: 9e-8 apart while another process used the second core)."""
    emb = embed(signature, [jpegs[0], jpegs[1], jpegs[0]])
    np.testing.assert_allclose(emb[0], emb[2], rtol=0, atol=1e-6)
    assert float(emb[0] @ emb[1]) < 0.99


def test_other_encodings_of_the_same_image(signature: Any, jpegs: list[bytes]) -> None:
    pixels = tf.io.decode_jpeg(jpegs[0], channels=3)
    png = tf.io.encode_png(pixels).numpy()
    opaque = tf.ones_like(pixels[..., :1]) * 255
    rgba = tf.io.encode_png(tf.concat([pixels, opaque], -1)).numpy()
    emb = embed(signature, [jpegs[0], png, rgba])
    assert float(emb[0] @ emb[1]) > 0.9999
    assert float(emb[0] @ emb[2]) > 0.9999


def test_transparency_is_composited_over_white(signature: Any) -> None:
    black = tf.zeros([80, 60, 3], tf.uint8)
    transparent_black = tf.io.encode_png(tf.concat([black, black[..., :1]], -1)).numpy()
    white = tf.io.encode_png(black + 255).numpy()
    emb = embed(signature, [transparent_black, white, tf.io.encode_png(black).numpy()])
    assert float(emb[0] @ emb[1]) > 0.9999
    assert float(emb[0] @ emb[2]) < 0.99


def test_grayscale_and_gif_decode(signature: Any, jpegs: list[bytes]) -> None:
    pixels = tf.io.decode_jpeg(jpegs[1], channels=3)
    gray = tf.io.encode_png(tf.image.rgb_to_grayscale(pixels)).numpy()
    # A 2x2 GIF89a (hand-made: 2-colour palette, one frame).
    gif_bytes = bytes.fromhex(
        "47494638396102000200800000ff0000ffffff21f90400000000002c00000000020002000002028451003b"
    )
    emb = embed(signature, [gray, gif_bytes])
    assert emb.shape == (2, EMBEDDING_DIM)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_garbage_bytes_raise_invalid_argument(signature: Any, jpegs: list[bytes]) -> None:
    with pytest.raises(tf.errors.InvalidArgumentError):
        embed(signature, [jpegs[0], b"this is not an image"])


def _bmp(width: int, height: int) -> bytes:
    """A 24-bit BMP (bottom-up rows padded to 4 bytes), black."""
    row = (width * 3 + 3) // 4 * 4
    pixels = b"\0" * row * height
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + len(pixels), 0, 0, 54) + info + pixels


def _encodings(width: int, height: int) -> dict[str, bytes]:
    pixels = tf.zeros([height, width, 3], tf.uint8)
    gif = bytearray.fromhex(  # the hand-made 2x2 GIF89a of the test above, its screen resized
        "47494638396102000200800000ff0000ffffff21f90400000000002c00000000020002000002028451003b"
    )
    gif[6:10] = struct.pack("<HH", width, height)
    return {
        "png": tf.io.encode_png(pixels).numpy(),
        "jpeg": tf.io.encode_jpeg(pixels).numpy(),
        "gif": bytes(gif),
        "bmp": _bmp(width, height),
    }


def test_the_graph_reads_each_formats_size_from_its_header() -> None:
    for name, data in _encodings(70, 30).items():
        assert int(header_pixels(tf.constant(data))) == 70 * 30, name
    huge = bytearray(_encodings(1, 1)["png"])
    huge[16:24] = b"\xff" * 8  # 4294967295 x 4294967295: the product must not wrap around
    assert int(header_pixels(tf.constant(bytes(huge)))) >= 2**62
    assert int(header_pixels(tf.constant(b"not an image"))) == 0
    assert int(header_pixels(tf.constant(b""))) == 0


def test_the_model_refuses_a_pixel_bomb_before_decoding_it(signature: Any) -> None:
    """A 12000x12000 PNG of a few hundred KB (1.7 GB as the float32 RGB the graph decodes to)
    sent straight to the model, as a TF Serving client that skips the header check would."""
    from tests.serving.test_image_header import png_bomb

    with pytest.raises(tf.errors.InvalidArgumentError, match="too large to decode"):
        embed(signature, [png_bomb(12000)])


def test_every_format_over_the_bound_is_refused_and_under_it_embedded(weights: Path) -> None:
    embed_fn = bytes_embedder(build_embedder(weights, SIZE), max_pixels=40 * 40)
    for name, data in _encodings(41, 40).items():
        with pytest.raises(tf.errors.InvalidArgumentError, match="too large to decode"):
            embed_fn(tf.constant([data]))
        assert name
    for name, data in _encodings(40, 40).items():
        assert embed_fn(tf.constant([data])).shape == (1, EMBEDDING_DIM), name


def test_empty_batch(signature: Any) -> None:
    assert embed(signature, []).shape == (0, EMBEDDING_DIM)


def test_embed_files_matches_the_savedmodel(
    signature: Any, weights: Path, data_dir: Path, jpegs: list[bytes]
) -> None:
    paths = [data_dir / "myntra" / "images" / f"{i}.jpg" for i in IDS]
    local = embed_files(paths, build_embedder(weights, SIZE), batch_size=2)
    np.testing.assert_allclose(local, embed(signature, jpegs), atol=1e-5)


def test_a_pixel_bomb_among_training_images_is_refused_before_decoding(
    tmp_path: Path, data_dir: Path
) -> None:
    from tests.serving.test_image_header import png_bomb

    good = data_dir / "myntra" / "images" / f"{IDS[0]}.jpg"
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb())
    calls: list[int] = []

    def fn(data: Any) -> np.ndarray:  # never reached: the header check comes first
        calls.append(len(data))
        return np.zeros((len(data), EMBEDDING_DIM), dtype=np.float32)

    with pytest.raises(EmbedderError, match=r"too large to decode.*MAX_PIXELS"):
        embed_files([good, bomb], fn)
    assert calls == []
    assert embed_files([good], fn).shape == (1, EMBEDDING_DIM)


def test_second_export_gets_version_2_and_the_size_of_finetuned_weights(
    exported: tuple[Path, Path], weights: Path, tmp_path: Path
) -> None:
    from prodcat.training.image_commands import export_image_embedder

    base, _ = exported
    tuned = tmp_path / "tuned.weights.h5"
    shutil.copyfile(weights, tuned)
    figures = {"precision_at_k": 0.5}
    (tmp_path / "tuned.meta.json").write_text(json.dumps({"image_size": 64, "finetuned": figures}))
    path = export_image_embedder(tuned, base)
    assert path == base / "image_embedder" / "2"
    card = json.loads((path / "model_card.json").read_text())
    assert (card["version"], card["image_size"], card["weights"]) == (2, 64, "tuned.weights.h5")
    assert card["finetuned"] == figures
    with pytest.raises(EmbedderError, match="immutable"):
        export_embedder(weights=weights, base_dir=base, version=2, image_size=SIZE)


def test_missing_weights(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="not found"):
        build_embedder(tmp_path / "none.weights.h5", SIZE)
