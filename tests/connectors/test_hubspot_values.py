"""The relay's values as HubSpot's property types take them (connectors.hubspot.properties), judged by the fake's
own validation (connectors.hubspot.fake, HubSpot's rules): what is adapted is taken, and what cannot be is
refused naming the property, the value and what it takes."""

from __future__ import annotations

import pytest

from connectors.hubspot import fake
from connectors.hubspot.properties import Definition, ValueRefused, adapt

OPTIONS = (("Generating", "gen"), ("Ready", "ready_1"), ("Failed", "FAILED"))


def both(prop: fake.Property) -> tuple[Definition, fake.Property]:
    """The relay's reading of a property the fake defines, and the fake's."""
    return Definition.of(prop.view()), prop


@pytest.mark.parametrize(
    ("prop", "value", "written"),
    [
        (fake.Property("s", "enumeration", "select", OPTIONS), "Generating", "gen"),
        (fake.Property("s", "enumeration", "select", OPTIONS), "ready", "ready_1"),
        (
            fake.Property("s", "enumeration", "select", OPTIONS),
            "Failed: the prompt was empty",
            "FAILED",
        ),
        (fake.Property("s", "enumeration", "radio", (("Ready", "Ready"),)), "Ready", "Ready"),
        (fake.Property("d", "date", "date"), "2026-12-07T22:18:55+00:00", "2026-12-07"),
        (fake.Property("d", "date", "date"), "2026-12-07T23:30:00-02:00", "2026-12-08"),
        (
            fake.Property("t", "datetime", "date"),
            "2026-12-07T22:18:55+00:00",
            "2026-12-07T22:18:55+00:00",
        ),
        (fake.Property("n", "number", "number"), 3, "3"),
        (fake.Property("n", "number", "number"), 12.5, "12.5"),
        (fake.Property("x", "string", "text"), "Failed: why", "Failed: why"),
        (fake.Property("n", "number", "number"), "", ""),
    ],
)
def test_each_value_is_written_as_its_property_takes_it(prop, value, written):
    definition, _ = both(prop)
    adapted = adapt({prop.name: value}, {prop.name: definition}, "deal")[prop.name]
    assert adapted == written
    assert fake._invalid(prop, prop.name, adapted) is None, "HubSpot takes it"


@pytest.mark.parametrize(
    ("prop", "value", "said"),
    [
        (
            fake.Property("s", "enumeration", "select", OPTIONS[:2]),
            "Failed: why",
            ['"Failed"', '"Ready"'],
        ),
        (fake.Property("n", "number", "number"), "Ready", ["a number", '"Ready"']),
        (fake.Property("b", "bool", "booleancheckbox"), "Ready", ["true or false"]),
        (fake.Property("d", "date", "date"), "https://relay/files/x", ["a date"]),
    ],
)
def test_a_value_its_property_cannot_take_is_refused_by_name(prop, value, said):
    definition, _ = both(prop)
    assert fake._invalid(prop, prop.name, str(value)) is not None, "HubSpot refuses it too"
    with pytest.raises(ValueRefused) as refused:
        adapt({prop.name: value}, {prop.name: definition}, "deal")
    assert f"deal property {prop.name}" in refused.value.found
    for words in said:
        assert words in refused.value.message, refused.value.message
    assert refused.value.fix


def test_a_property_the_object_lacks_is_named():
    with pytest.raises(ValueRefused) as refused:
        adapt({"relay_amount": 1}, {}, "deal")
    assert "no property relay_amount" in refused.value.found and "Create it" in refused.value.fix


def test_hubspot_refuses_a_time_that_is_not_midnight_in_a_date_property():
    prop = fake.Property("d", "date", "date")
    problem = fake._invalid(prop, "d", "2026-12-07T22:18:55.865+00:00")
    assert problem and problem["error"] == "INVALID_DATE" and "not midnight!" in problem["message"]
    assert fake._invalid(prop, "d", str(1796601600000)) is None, "epoch milliseconds at midnight"
