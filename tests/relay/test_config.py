"""RELAY_* settings are read as their fields' types, and a value of the wrong type names its variable."""

from __future__ import annotations

import pytest

from app.core.config import RelayConfig


def test_each_setting_is_read_as_its_fields_type_and_written_back_the_same():
    config = RelayConfig.from_env(
        {
            "RELAY_DELIVERY_MAX_ATTEMPTS": "7",
            "RELAY_UPSTREAM_TIMEOUT_SECONDS": "2.5",
            "RELAY_SUBMIT_RETRY_INTERVALS": "1, 4,16",
            "RELAY_PUBLIC_URL": "https://relay.example",
            "RELAY_AIRTABLE_PRIVATE_ATTACHMENTS": "true",
        }
    )
    assert config.delivery_max_attempts == 7 and isinstance(config.delivery_max_attempts, int)
    assert config.upstream_timeout_seconds == 2.5
    assert config.submit_retry_intervals == (1.0, 4.0, 16.0)
    assert config.public_url == "https://relay.example"
    assert config.airtable_private_attachments is True, "a bool: true/false, 1/0"
    assert RelayConfig.from_env(config.to_env()) == config, "a child process gets the same config"


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("RELAY_DELIVERY_MAX_ATTEMPTS", "five", "is not a whole number"),
        ("RELAY_UPSTREAM_TIMEOUT_SECONDS", "2,5", "is not a number"),
        ("RELAY_SUBMIT_RETRY_INTERVALS", "1,soon", "is not a comma-separated list of float"),
        ("RELAY_AIRTABLE_PRIVATE_ATTACHMENTS", "yes please", "is not true or false"),
    ],
)
def test_a_value_of_the_wrong_type_names_its_variable(variable, value, said):
    with pytest.raises(ValueError, match=f"^{variable}='{value}' {said}"):
        RelayConfig.from_env({variable: value})
