"""Dashboard and alert rules use only metrics the code defines; the rules pass promtool's tests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from herald import metrics
from herald.ops import exposition

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SUFFIXES = {Counter: ("_total",), Gauge: ("",), Histogram: ("_bucket", "_sum", "_count")}


def exported_names() -> set[str]:
    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            base = value._name  # the family name, without the type's suffixes
            names |= {base + suffix for suffix in SUFFIXES[type(value)]}
    return names


def referenced(text: str) -> set[str]:
    return set(re.findall(r"\bherald_[a-z0-9_]+", text))


def test_catalogue_is_prefixed_and_documented() -> None:
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            assert value._name.startswith("herald_")
            assert len(value._documentation) > 10, value._name


def test_dashboard_queries_use_defined_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "herald.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs
    used = set().union(*(referenced(e) for e in exprs))
    assert used <= exported_names(), used - exported_names()


def test_alert_rules_use_defined_metrics() -> None:
    used = referenced((DEPLOY / "prometheus" / "alerts.yml").read_text())
    assert used
    assert used <= exported_names(), used - exported_names()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed")
def test_promtool_checks_and_unit_tests_pass() -> None:
    folder = DEPLOY / "prometheus"
    check = subprocess.run(["promtool", "check", "rules", "alerts.yml"], cwd=folder, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = subprocess.run(["promtool", "test", "rules", "alerts_test.yml"], cwd=folder, capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_every_unlabelled_metric_has_the_processes_that_show_it() -> None:
    """Issue #31: every unlabelled metric was exported at 0 by every process (the worker's
    in-flight by the API too). Each now names the processes that keep it."""
    unlabelled = {v for v in vars(metrics).values() if isinstance(v, MetricWrapperBase) and not v._labelnames}
    assert unlabelled == set(metrics.UNLABELLED_OWNERS)
    assert "herald_worker_in_flight" in metrics.not_shown_by(metrics.Role.API)
    assert "herald_worker_in_flight" not in metrics.not_shown_by(metrics.Role.WORKER)
    assert metrics.not_shown_by(None) == {m._name for m in unlabelled}


def test_a_process_shows_only_its_own_unlabelled_metrics() -> None:
    shown = exposition(metrics.not_shown_by(metrics.Role.API)).decode()
    assert "herald_campaigns_producing" in shown
    assert "herald_worker_in_flight" not in shown
    assert "herald_duplicate_sends_total" not in shown
    assert "herald_produce_seconds_bucket" in shown  # every process produces
