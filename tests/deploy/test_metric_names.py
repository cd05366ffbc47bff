"""Every metric the dashboards and alerts name is one the code really declares, with those labels.

The declared metrics are collected by building every metrics class on a fresh registry, as the
processes do (worker stages, model calls, Milvus, sampler, retrain trigger, drift, web UI and API,
the process collector), so a renamed metric or label breaks this test, not a dashboard in
production.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, ProcessCollector

from prodcat.core.metrics import (
    DriftMetrics,
    RetrainMetrics,
    SamplerMetrics,
    WorkerMetrics,
)
from prodcat.serving.api import ApiMetrics
from prodcat.serving.web.metrics import WebMetrics

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "helm" / "prodcat" / "files"
DASHBOARDS = sorted((FILES / "grafana").glob("*.json"))
ALERTS = FILES / "prometheus" / "alerts.yml"

#: Series Prometheus makes itself, and labels it adds to every scraped series.
SYNTHETIC = {"up": {"job", "instance"}}
TARGET_LABELS = {"job", "instance"}

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk",
    "bottomk", "quantile", "count_values", "group", "inf", "nan",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)")
_IDENT = re.compile(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:([a-zA-Z_:][\w:]*)\s*,\s*)?(\w+)\s*\)\s*$")


def declared() -> dict[str, set[str]]:
    """Sample names the code can expose (``x_total``, ``x_bucket``, ...) → their label names."""
    names: dict[str, set[str]] = {}
    for build in (_worker_registry, _api_registry):
        registry = build()
        # The registry's own index of sample names; a labelled metric with no children yet has no
        # samples, so collect() would not show it.
        for name, collector in registry._names_to_collectors.items():
            labels = set(getattr(collector, "_labelnames", ()))
            names[name] = labels | TARGET_LABELS | ({"le"} if name.endswith("_bucket") else set())
    return names


def _worker_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)  # indexes the process collector's names
    ProcessCollector(registry=registry)
    worker = WorkerMetrics(registry)
    worker.stage("normalize")
    worker.models()
    worker.milvus()
    worker.feeds()
    SamplerMetrics(registry)
    RetrainMetrics(registry)
    DriftMetrics(registry)
    return registry


def _api_registry() -> CollectorRegistry:
    """The web UI (with the API's HTTP metrics) and, separately, the similarity API."""
    registry = CollectorRegistry(auto_describe=True)  # indexes the process collector's names
    ProcessCollector(registry=registry)
    WebMetrics(registry)
    separate = CollectorRegistry()
    ApiMetrics(separate)
    assert set(separate._names_to_collectors) <= set(registry._names_to_collectors)
    return registry


def references(expr: str) -> tuple[dict[str, set[str]], set[str]]:
    """Metric names in a PromQL expression with the labels their selectors match on, and the
    labels of its grouping clauses (by, on, ...)."""
    text = _STRING.sub('""', expr)
    grouping = {
        label.strip()
        for _, labels in _GROUPING.findall(text)
        for label in labels.split(",")
        if label.strip()
    }
    text = _GROUPING.sub(" ", text)
    metrics: dict[str, set[str]] = {}
    for name, matchers in _SELECTOR.findall(text):
        labels = {label for label, _ in _MATCHER.findall(matchers)}
        if not name:  # {__name__="..."} is not used here
            raise AssertionError(f"selector without a metric name in {expr!r}")
        metrics.setdefault(name, set()).update(labels)
    text = _SELECTOR.sub(lambda m: f" {m.group(1)} ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    for name in _IDENT.findall(text):
        if name.lower() not in KEYWORDS:
            metrics.setdefault(name, set())
    return metrics, grouping


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])  # collapsed rows hold their panels


def dashboard_exprs(path: Path) -> Iterator[str]:
    board = json.loads(path.read_text(encoding="utf-8"))
    for panel in _panels(board["panels"]):
        for target in panel.get("targets") or []:
            if target.get("expr"):
                yield target["expr"]
    for variable in board.get("templating", {}).get("list", []):
        query = variable.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        if variable.get("type") == "query" and query:
            match = _LABEL_VALUES.match(query)
            if match:  # label_values(metric, label): the metric must carry the label
                metric, label = match.groups()
                yield f'{metric}{{{label}=""}}' if metric else label
            else:
                yield query


def alert_exprs() -> Iterator[str]:
    for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            yield rule["expr"]


def recorded() -> set[str]:
    return {
        rule["record"]
        for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


SOURCES = [(path.name, list(dashboard_exprs(path))) for path in DASHBOARDS] + [
    (ALERTS.name, list(alert_exprs()))
]


def test_the_reference_extraction_finds_names_and_labels() -> None:
    metrics, grouping = references(
        'sum by (stage, le) (rate(prodcat_batch_seconds_bucket{stage=~"$stage", feed!="x y"}'
        "[$__rate_interval])) / on (stage) group_left max(prodcat_consumer_lag) > 0.05 "
        "and time() - prodcat_model_trained_timestamp_seconds > 7 * 86400"
    )
    assert metrics == {
        "prodcat_batch_seconds_bucket": {"stage", "feed"},
        "prodcat_consumer_lag": set(),
        "prodcat_model_trained_timestamp_seconds": set(),
    }
    assert grouping == {"stage", "le"}
    assert list(dashboard_exprs(DASHBOARDS[0]))  # and the dashboards have expressions at all


@pytest.mark.parametrize(("source", "exprs"), SOURCES, ids=[s for s, _ in SOURCES])
def test_every_metric_and_label_used_is_declared(source: str, exprs: list[str]) -> None:
    known = declared()
    known.update(SYNTHETIC)
    known.update({name: set(TARGET_LABELS) for name in recorded()})
    assert exprs, f"{source} has no expressions"
    problems = []
    for expr in exprs:
        metrics, grouping = references(expr)
        assert metrics, f"no metric found in {expr!r}"
        available: set[str] = set()
        for name, labels in metrics.items():
            if name not in known:
                problems.append(f"{name} (in {expr!r}) is not declared by the code")
                continue
            available |= known[name]
            unknown = labels - known[name]
            if unknown:
                problems.append(f"{name} has no label(s) {sorted(unknown)} (in {expr!r})")
        if available and grouping - available:
            problems.append(
                f"grouping by {sorted(grouping - available)} not on any series of {expr!r}"
            )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_dashboards_query_the_datasource_variable(path: Path) -> None:
    board = json.loads(path.read_text(encoding="utf-8"))
    [variable] = [v for v in board["templating"]["list"] if v["name"] == "datasource"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    for panel in _panels(board["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
    ids = [panel["id"] for panel in _panels(board["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert board["uid"] == path.stem
