"""A tenant app that exists only for bench/tenants.py: its one migration is "the new migration"
applied to every business schema (DJANGO_SETTINGS_MODULE=bench.tenants_settings)."""
