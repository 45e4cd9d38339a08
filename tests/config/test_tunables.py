"""PARLEY_* settings read on every send are kept once read (config.tunables), and follow a
setting's change at once (tests' override_settings; the setting_changed signal)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings

from config.tunables import tunable
from messaging.group_commit import batch_max


def test_a_tunable_is_the_setting_kept_and_follows_its_changes() -> None:
    configured = settings.PARLEY_SEND_BATCH_MAX
    assert tunable("PARLEY_SEND_BATCH_MAX", 1) == configured == batch_max()
    with override_settings(PARLEY_SEND_BATCH_MAX=configured + 7):
        assert batch_max() == configured + 7
        assert tunable("PARLEY_SEND_BATCH_MAX", 1) == configured + 7
    assert batch_max() == configured


def test_a_tunable_not_configured_is_its_default_until_it_is() -> None:
    assert tunable("PARLEY_TEST_UNSET_TUNABLE", 3) == 3
    with override_settings(PARLEY_TEST_UNSET_TUNABLE=5):
        assert tunable("PARLEY_TEST_UNSET_TUNABLE", 3) == 5
    assert tunable("PARLEY_TEST_UNSET_TUNABLE", 3) == 3


def test_a_kept_tunable_is_not_read_from_the_settings_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kept: a second read does not go through Django's lazy settings object (two Python calls
    per read)."""
    import config.tunables as tunables

    tunable("PARLEY_SEND_MAX_WAIT", 0.5)
    reads: list[str] = []

    class Counting:
        def __getattr__(self, name: str) -> object:
            reads.append(name)
            return getattr(settings, name)

    monkeypatch.setattr(tunables, "settings", Counting())
    assert tunable("PARLEY_SEND_MAX_WAIT", 0.5) == settings.PARLEY_SEND_MAX_WAIT
    assert reads == []
