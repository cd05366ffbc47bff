"""The import layers of docs/architecture.md hold, and the contract really catches a violation."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(
    cwd: Path, config: Path, pythonpath: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(config), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_project_keeps_its_layers() -> None:
    done = _lint(ROOT, ROOT / "pyproject.toml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def _layers_contract() -> dict[str, object]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [c for c in contracts if c["type"] == "layers"]
    return dict(layers)


def test_a_core_module_importing_a_stage_breaks_the_contract(tmp_path: Path) -> None:
    contract = _layers_contract()
    package = tmp_path / "prodcat"
    for layer in contract["layers"]:  # type: ignore[attr-defined]
        for name in str(layer).replace(":", "|").split("|"):
            parts = name.strip().split(".")[1:]
            target = package.joinpath(*parts)
            target.mkdir(parents=True, exist_ok=True)
            (target / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "streams" / "stage.py").write_text("X = 1\n")
    (package / "core" / "metrics.py").write_text("from prodcat.streams.stage import X\n")
    layers = ", ".join(f'"{layer}"' for layer in contract["layers"])  # type: ignore[attr-defined]
    config = tmp_path / "layers.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "prodcat"\n\n'
        f'[[tool.importlinter.contracts]]\nname = "layers"\ntype = "layers"\nlayers = [{layers}]\n'
    )
    done = _lint(tmp_path, config, pythonpath=tmp_path)
    assert done.returncode != 0, done.stdout
    assert "prodcat.core.metrics -> prodcat.streams.stage" in done.stdout
