"""The deploy files name every topic, consumer group and process the code defines."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from herald.kafka.topics import (
    BILLING_SINK_GROUP,
    CALLBACK_SINK_GROUP,
    STATUS_SINK_GROUP,
    WORKER_GROUP,
    contracts,
)
from herald_cli.main import COMMANDS
from herald_cli.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROCESSES = {"api", "worker", "sinks"}
"""The long-running production processes (carrier-sim and dev are for development)."""
GROUPS = {WORKER_GROUP, STATUS_SINK_GROUP, BILLING_SINK_GROUP, CALLBACK_SINK_GROUP}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_processes_are_commands_of_the_code() -> None:
    assert PROCESSES | {"migrate", "carrier-sim"} <= set(COMMANDS)


def test_readme_lists_every_topic_with_its_partitions_and_every_group() -> None:
    text = (DEPLOY / "README.md").read_text()
    for topic in contracts():
        row = re.search(rf"^\| `{re.escape(topic.name)}` \| (\d+) \| (\d+) h \|", text, re.M)
        assert row is not None, f"{topic.name} missing from deploy/README.md"
        assert (int(row.group(1)), int(row.group(2))) == (topic.partitions, topic.retention_hours), topic.name
    for group in GROUPS:
        assert f"`{group}`" in text, group


def test_compose_runs_every_process_on_real_kafka_and_postgres() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    herald = [s for s in services.values() if s.get("image") == "herald:local"]
    assert PROCESSES | {"migrate"} <= {s["command"][0] for s in herald}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert services["postgres"]["image"].startswith("postgres:")
    for name in ("kafka", "postgres", "prometheus", "grafana"):
        image = services[name]["image"]
        assert re.search(r":v?\d+(\.\d+)+", image), f"{name} is not pinned: {image}"
    # Every process's metrics are scraped.
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in prometheus["scrape_configs"]}
    assert {f"herald-{p}" for p in PROCESSES} <= jobs
    assert prometheus["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_kubernetes_manifests_run_every_process_with_probes_resources_and_a_grace_period() -> None:
    seen: dict[str, dict[str, Any]] = {}
    kinds: set[tuple[str, str]] = set()
    for path in (DEPLOY / "k8s").glob("*.yaml"):
        for doc in _documents(path):
            kinds.add((doc["kind"], doc["metadata"]["name"]))
            if doc["kind"] == "Deployment":
                spec = doc["spec"]["template"]["spec"]
                (container,) = spec["containers"]
                seen[container["args"][0]] = {"spec": spec, "container": container}
    assert set(seen) == PROCESSES
    assert {
        ("Service", "herald-api"),
        ("HorizontalPodAutoscaler", "herald-api"),
        ("Job", "herald-migrate"),
        ("CronJob", "herald-retention"),
    } <= kinds
    for process, found in seen.items():
        container, spec = found["container"], found["spec"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", process
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", process
        assert container["resources"]["requests"], process
        assert spec["terminationGracePeriodSeconds"] >= 30, process
        assert spec["securityContext"]["runAsNonRoot"] is True, process
        assert {"configMapRef", "secretRef"} <= {k for ref in container["envFrom"] for k in ref}, process


def test_retention_runs_daily_as_the_retention_command() -> None:
    (job,) = _documents(DEPLOY / "k8s" / "retention-cronjob.yaml")
    (container,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["retention"]
    assert "retention" in COMMANDS
    assert len(job["spec"]["schedule"].split()) == 5


def test_dockerfile_is_multi_stage_pinned_and_non_root() -> None:
    text = (DEPLOY.parent / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(bases) >= 2
    assert all(re.search(r":\d+\.\d+\.\d+", base) for base in bases), bases
    assert re.search(r"^USER 10001", text, re.M)


def _pins(path: Path) -> dict[str, str]:
    """A lock file's pins by normalised name."""
    pins = {}
    for line in path.read_text().split():
        name, version = line.split("==")
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_the_image_installs_the_runtime_lock_only_at_the_dev_locks_versions() -> None:
    root = DEPLOY.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    runtime, dev = _pins(root / "requirements.lock"), _pins(root / "requirements-dev.lock")
    assert "pip install -r requirements.lock" in (root / "Dockerfile").read_text()
    for requirement in project["dependencies"]:
        name, version = requirement.split("==")
        assert runtime[re.sub(r"[-_.]+", "-", name).lower()] == version, requirement
    # (Not every dev pin: httpx is also litestar's own dependency.)
    assert {"pytest", "mypy", "ruff", "schemathesis", "hypothesis"} <= set(dev) - set(runtime)
    assert {name: dev.get(name) for name in runtime} == runtime


def test_compose_and_the_k8s_secret_require_real_secrets() -> None:
    """Security review, finding 1: compose shipped `change-me-receipt-secret`. Every secret a
    production process checks must come from the environment (compose refuses to start
    without it) and the Kubernetes example holds only placeholders Herald itself refuses."""
    required = {"HERALD_ADMIN_TOKEN", "HERALD_PROVIDER_RECEIPT_SECRET", "HERALD_SECRETS_KEK"}
    env = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["x-herald"]["environment"]
    for name in required:
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", env[name]), f"{name}: {env[name]}"
    (secret,) = _documents(DEPLOY / "k8s" / "secrets.example.yaml")
    assert required <= set(secret["stringData"])
    for name in required:  # each placeholder alone is refused (the KEK's is not even a key)
        real = {n: "x" * 32 for n in required} | {"HERALD_SECRETS_KEK": "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg"}
        try:
            refused = bool(Settings.from_env({**real, name: secret["stringData"][name]}).refusals())
        except ValueError:
            refused = True
        assert refused, name
        assert not Settings.from_env(real).refusals()
