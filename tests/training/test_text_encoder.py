"""The pretrained text encoder: installed files verified, a clear error when missing, and vectors
that put titles of the same kind of product close together."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from prodcat.core.errors import ConfigError
from prodcat.core.settings import load_settings
from prodcat.training.text_encoder import TOKENIZER_FILE, TextEncoder, check_files


@pytest.fixture(scope="module")
def folder() -> Path:
    path = load_settings().encoder.path
    check_files(path)  # installed by `make install` (prodcat dev encoder install)
    return path


@pytest.fixture(scope="module")
def encoder(folder: Path) -> TextEncoder:
    return TextEncoder(folder)


def test_missing_files_say_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="prodcat dev encoder install"):
        TextEncoder(tmp_path / "nowhere")


def test_a_changed_file_is_refused(folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "encoder"
    shutil.copytree(folder, copy)
    with (copy / TOKENIZER_FILE).open("a", encoding="utf-8") as handle:
        handle.write(" ")
    with pytest.raises(ConfigError, match="SHA-256"):
        check_files(copy)


def test_vectors_are_unit_length_deterministic_and_meaningful(encoder: TextEncoder) -> None:
    titles = [
        "Men's red cotton shirt, slim fit",
        "Slim fit cotton shirt for men, red",
        "Stainless steel electric kettle 1.5 l",
        "",
    ]
    vectors = encoder.encode(titles)
    assert vectors.shape == (4, encoder.dim) == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(encoder.encode(titles), vectors, atol=1e-6)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2  # two shirts, not a shirt and a kettle
    long = encoder.encode(["word " * 500])  # truncated to max_tokens, not an error
    assert long.shape == (1, 384)
    assert encoder.encode([]).shape == (0, 384)


def test_rows_come_back_in_input_order_whatever_the_batching(folder: Path) -> None:
    """Texts are batched by length inside ``encode``: each row is still its own text's vector
    (as encoded alone, up to the int8 model's rounding across batch shapes), in input order."""
    encoder = TextEncoder(folder, batch_size=2)
    texts = [
        "Stainless steel electric kettle with auto shut-off and a 1.5 litre capacity, cordless",
        "Red shirt",
        "Analog wrist watch for men with a leather strap",
        "",
        "Kettle",
    ]
    together = encoder.encode(texts)
    alone = np.concatenate([encoder.encode([t]) for t in texts])
    assert np.all(np.sum(together * alone, axis=1) > 0.98), together @ alone.T
    reverse = encoder.encode(texts[::-1])[::-1]
    assert np.all(np.sum(together * reverse, axis=1) > 0.98)
