"""Parley's settings plus bench.tenant_probe as a tenant app: the new migration of bench/tenants.py."""

from config.settings import *  # noqa: F403
from config.settings import INSTALLED_APPS, TENANT_APPS

TENANT_APPS = [*TENANT_APPS, "bench.tenant_probe"]
INSTALLED_APPS = [*INSTALLED_APPS, "bench.tenant_probe"]
