"""The image's role entry points and the compose file point at commands prodcat really has."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from prodcat.cli import _parser
from prodcat.streams.app import AGENTS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ENTRYPOINT = DEPLOY / "docker-entrypoint.sh"

ROLES = {
    "normalize": ["worker", "normalize"],
    "classify": ["worker", "classify"],
    "embed": ["worker", "embed"],
    "sample": ["worker", "sample"],
    "drift": ["worker", "drift"],
    "retrain-trigger": ["worker", "retrain"],
    "retrain-job": ["retrain", "run"],
    "web": ["ui"],
    "api": ["serve", "api"],
}


@pytest.fixture
def entrypoint(tmp_path: Path):
    """Run the entrypoint with a `prodcat` on PATH that prints the argv it was given."""
    fake = tmp_path / "prodcat"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}

    def run(*args: str) -> list[str]:
        out = subprocess.run(
            ["sh", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, check=True
        )
        return out.stdout.splitlines()

    return run


def _valid_cli(argv: list[str]) -> None:
    args = _parser().parse_args(argv)  # argparse exits (SystemExit) on an unknown command
    if argv[0] == "worker":
        assert set(args.roles) <= set(AGENTS), argv


@pytest.mark.parametrize("role", sorted(ROLES))
def test_every_role_maps_to_a_real_command(entrypoint, role: str) -> None:
    argv = entrypoint(role)
    assert argv == ROLES[role]
    _valid_cli(argv)


def test_extra_arguments_and_plain_cli_pass_through(entrypoint) -> None:
    assert entrypoint("retrain-job", "--version", "3") == ["retrain", "run", "--version", "3"]
    assert entrypoint("worker", "normalize", "classify") == ["worker", "normalize", "classify"]
    assert entrypoint("topics", "create") == ["topics", "create"]


def test_the_image_is_multi_stage_and_runs_as_a_numeric_non_root_user() -> None:
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) == 2 and stages[1].endswith("AS runtime")
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    entry = next(line for line in lines if line.startswith("ENTRYPOINT"))
    assert json.loads(entry.removeprefix("ENTRYPOINT").strip()) == ["prodcat-entrypoint"]


def test_compose_runs_real_commands_and_mounts_existing_files(entrypoint) -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    prodcat = {
        name: svc
        for name, svc in compose["services"].items()
        if str(svc.get("image", "")).startswith("prodcat:")
    }
    assert {"normalize", "classify", "embed", "sample", "drift", "retrain-trigger", "web"} <= set(
        prodcat
    )
    for name, svc in prodcat.items():
        if "command" in svc:
            _valid_cli(entrypoint(*svc["command"]))
        assert svc.get("read_only", name == "init") is True or name == "init", name
    for svc in compose["services"].values():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source
