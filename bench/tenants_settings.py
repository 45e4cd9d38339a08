"""Parley's settings plus bench.tenant_probe as a tenant app: the new migration of bench/tenants.py.

PARLEY_PROBE_STEP=2 adds a second probe migration (bench/tenant_probe/step2_migrations), so a second
executor has something new to apply in the same run."""

import os

from config.settings import *  # noqa: F403
from config.settings import INSTALLED_APPS, TENANT_APPS

TENANT_APPS = [*TENANT_APPS, "bench.tenant_probe"]
INSTALLED_APPS = [*INSTALLED_APPS, "bench.tenant_probe"]
if os.environ.get("PARLEY_PROBE_STEP") == "2":
    MIGRATION_MODULES = {"tenant_probe": "bench.tenant_probe.step2_migrations"}
