from __future__ import annotations

from tenancy.demo import DemoWorld


def seed(world: DemoWorld) -> None:
    """This app's demo data; filled in by its issue."""
