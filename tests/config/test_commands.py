"""The project's own commands: `make demo` runs seed_demo and rundemo, which compose every app
and so live in config, not in one of the apps."""

from django.core.management import get_commands


def test_demo_commands_are_configs() -> None:
    commands = get_commands()
    assert commands["seed_demo"] == "config"
    assert commands["rundemo"] == "config"
    assert commands["parley_setup"] == "tenancy"
