"""The alert rules pass Debian's promtool (syntax and unit tests), and every alert is tested."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from prodcat.streams.app import AGENTS

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "helm" / "prodcat" / "files" / "prometheus"
ALERTS = RULES_DIR / "alerts.yml"
ALERTS_TEST = RULES_DIR / "alerts_test.yml"
INSTALL_HINT = (
    "promtool not found: install Debian's prometheus package "
    "(`make install` runs deploy/install-system-deps.sh, or `sudo apt-get install prometheus`)"
)


def promtool() -> str:
    path = shutil.which("promtool") or (
        "/usr/bin/promtool" if Path("/usr/bin/promtool").is_file() else None
    )
    if path is None:
        pytest.fail(INSTALL_HINT)
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120
    )


def _alerts() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_the_rules() -> None:
    result = _run("check", "rules", ALERTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = _run("test", "rules", ALERTS_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_quiet_test_case() -> None:
    spec = yaml.safe_load(ALERTS_TEST.read_text(encoding="utf-8"))
    assert spec["rule_files"] == [ALERTS.name]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in spec["tests"]:
        for check in case.get("alert_rule_test", []):
            name = check["alertname"]
            expected = check.get("exp_alerts") or []
            (fires if expected else quiet).add(name)
            for alert in expected:
                assert alert.get("exp_annotations"), f"{name}: check the annotations it renders"
    alerts = set(_alerts())
    assert len(alerts) == len(_alerts()), "alert names must be unique"
    assert alerts - fires == set(), "alerts without a test case where they fire"
    assert alerts - quiet == set(), "alerts without a test case where they must not fire"
    assert (fires | quiet) - alerts == set(), "test cases for alerts that do not exist"


def test_every_alert_has_a_severity_and_a_summary() -> None:
    for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
                assert rule["annotations"]["summary"] and rule["annotations"]["description"]


COMPOSE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"


def test_the_compose_prometheus_config_is_valid_and_scrapes_every_role(tmp_path: Path) -> None:
    config = yaml.safe_load(COMPOSE_CONFIG.read_text(encoding="utf-8"))
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]  # where compose mounts it
    config["rule_files"] = [str(ALERTS)]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [promtool(), "check", "config", str(local)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    prodcat = {job for job in jobs if "prodcat" in job}  # ProdcatTargetDown's job matcher
    assert {f"prodcat-{role}" for role in AGENTS} | {"prodcat-web", "prodcat-api"} <= prodcat
