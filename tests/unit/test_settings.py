from __future__ import annotations

from pathlib import Path

import pytest

from herald.settings import Settings


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


def test_malformed_value_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"api\.port"):
        Settings.from_env({"HERALD_API_PORT": "eighty"})


def test_tuple_settings_are_comma_separated() -> None:
    settings = Settings.from_env({"HERALD_WORKER_RETRY_DELAYS_SECONDS": "1.5,30", "HERALD_KAFKA_BOOTSTRAP": "a:1,b:2"})
    assert settings.worker.retry_delays_seconds == (1.5, 30.0)
    assert settings.kafka.bootstrap == "a:1,b:2"
