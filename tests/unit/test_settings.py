from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from herald_cli.settings import Settings


def test_defaults_without_environment() -> None:
    s = Settings.from_env({})
    assert (s.api.port, s.database.url, s.kafka.bootstrap, s.data_dir) == (8080, "", "", Path(".herald"))


def test_public_variable_names_map_to_sections() -> None:
    s = Settings.from_env(
        {
            "HERALD_API_PORT": "9000",
            "HERALD_ADMIN_TOKEN": "t",
            "HERALD_DATA_DIR": "/tmp/h",
            "HERALD_DATABASE_URL": "postgresql://x/y",
            "HERALD_KAFKA_BOOTSTRAP": "k:9092",
            "HERALD_CARRIER_SIM_PORT": "9100",
            "HERALD_KAFKA_IDEMPOTENT_PRODUCER": "true",
            "UNRELATED": "1",
        }
    )
    assert s.api.port == 9000
    assert s.api.admin_token == "t"
    assert s.data_dir == Path("/tmp/h")
    assert s.database.url == "postgresql://x/y"
    assert s.kafka.bootstrap == "k:9092"
    assert s.kafka.idempotent_producer is True
    assert s.carrier_sim.port == 9100


def test_the_callback_policy_is_one_section_read_by_the_api_and_the_sinks() -> None:
    s = Settings.from_env({"HERALD_CALLBACKS_ALLOW_PRIVATE": "true", "HERALD_CALLBACKS_PORTS": "443,8443"})
    assert (s.callbacks.allow_private, s.callbacks.ports) == (True, (443, 8443))
    # The names these had while they sat in the API's section still work.
    old = Settings.from_env({"HERALD_API_ALLOW_PRIVATE_CALLBACKS": "true", "HERALD_API_CALLBACK_PORTS": "8443"})
    assert (old.callbacks.allow_private, old.callbacks.ports) == (True, (8443,))


def test_a_section_is_read_only_from_its_own_prefix() -> None:
    """carrier_sim and sinks are matched longest-first, never as a `carrier` or `sink` section."""
    s = Settings.from_env({"HERALD_CARRIER_SIM_LATENCY_MS": "7", "HERALD_SINKS_BATCH_MAX_RECORDS": "9"})
    assert (s.carrier_sim.latency_ms, s.sinks.batch_max_records) == (7, 9)
    with pytest.raises(ValueError, match="unknown setting HERALD_WORKER_NOPE"):
        Settings.from_env({"HERALD_WORKER_NOPE": "1"})


def test_malformed_value_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"api\.port"):
        Settings.from_env({"HERALD_API_PORT": "eighty"})


def test_tuple_settings_are_comma_separated() -> None:
    settings = Settings.from_env({"HERALD_WORKER_RETRY_DELAYS_SECONDS": "1.5,30", "HERALD_KAFKA_BOOTSTRAP": "a:1,b:2"})
    assert settings.worker.retry_delays_seconds == (1.5, 30.0)
    assert settings.kafka.bootstrap == "a:1,b:2"


def test_production_refuses_every_secret_shipped_in_the_repository() -> None:
    """Finding 1 of the security review: nothing refused the development receipt secret (or the
    compose file's placeholders) outside development."""
    assert len(Settings.from_env({}).refusals()) == 3  # admin token, receipt secret, KEK
    shipped = {
        "HERALD_ADMIN_TOKEN": "change-me-admin-token",
        "HERALD_PROVIDER_RECEIPT_SECRET": "change-me-receipt-secret",
    }
    assert len(Settings.from_env(shipped).refusals()) == 3
    real = {
        "HERALD_ADMIN_TOKEN": "a" * 32,
        "HERALD_PROVIDER_RECEIPT_SECRET": "b" * 32,
        "HERALD_SECRETS_KEK": base64.urlsafe_b64encode(b"c" * 32).decode(),
    }
    assert Settings.from_env(real).refusals() == []
    assert Settings.from_env({**shipped, "HERALD_ENVIRONMENT": "development"}).refusals() == []


def test_a_kek_that_is_not_a_key_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Settings.from_env({"HERALD_SECRETS_KEK": "c2hvcnQ"})
    with pytest.raises(ValueError, match="environment"):
        Settings.from_env({"HERALD_ENVIRONMENT": "staging"})


def test_a_serving_process_will_not_start_on_development_secrets() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    done = subprocess.run(
        [sys.executable, "-m", "herald_cli", "api"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0
    assert "HERALD_SECRETS_KEK" in done.stderr
    assert "refusing to start" in done.stderr
