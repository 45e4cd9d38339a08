"""Tenant migrations for many businesses: Django's migration machinery built once per process.

django-tenants' executors run Django's whole `migrate` command once per schema: system checks,
the migration loader (every migration module re-imported and the graph rebuilt), the project
state replayed through every applied migration and all models rendered twice. That is about
1.5 s of CPU per schema before any DDL: 1,001 schemas took 747 s with two processes
(`bench/tenants.py`, issue 9). The DDL of a typical new migration takes milliseconds.

`FastTenantExecutor` (`migrate_schemas --executor=parley`, the default here through
`GET_EXECUTOR_FUNCTION`) does per process, once: checks, the loader and graph, and for each set
of applied migrations seen (and the plan it gives), the rendered project states: before the plan,
around every operation of it (what `Migration.apply` makes with a clone and `state_forwards` per
operation) and after it. Per schema it does only what depends on the schema: make sure its
`django_migrations` table exists, read its applied migrations, check their consistency, plan, run
each planned operation's `database_forwards` on the shared states (the DDL in that schema: the
connection's search path; each migration atomic as in Django's `apply_migration`), record it in
that schema's `django_migrations`, and send pre_migrate/post_migrate (content types of new
models) as `migrate` does. Re-rendering the states per schema was the cost of an AlterField of a
foreign key (its `state_forwards` re-renders every model related to the target, the user model:
~1 CPU-s per schema for the `*_no_constraints_into_public` migrations). Operations only read the
states they are given, as they do in Django. Schemas are spread over
`TENANT_MULTIPROCESSING_MAX_PROCESSES` forked worker processes, each with its own cache.

Failures: a schema whose migration fails is reported at once (schema name and traceback on
stderr); its failed migration was rolled back (migrations are atomic), so it stays at the
migration before. The other schemas **continue**, until `PARLEY_MIGRATION_MAX_FAILURES` schemas
have failed (default 10; a migration broken everywhere is not tried a thousand times): then no
new schema is started, the ones in flight finish. At the end every failed schema is listed with
its error, with those never started, and the command exits non-zero. Re-running applies only
what each schema lacks.

Options this executor does not reimplement (an app label or migration name as target, --fake,
--fake-initial, --plan, --check, --prune, --run-syncdb) and multi-type tenants go to
django-tenants' standard executor, which runs the full `migrate` command per schema.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from django.apps import apps as global_apps
from django.conf import settings
from django.core.management import BaseCommand, CommandError
from django.core.management.sql import emit_post_migrate_signal, emit_pre_migrate_signal
from django.db import connections, transaction
from django.db.migrations import loader as loader_module
from django.db.migrations.executor import MigrationExecutor as DjangoMigrationExecutor
from django.db.migrations.operations.base import Operation
from django.db.migrations.recorder import MigrationRecorder
from django.db.migrations.state import ModelState, ProjectState
from django.utils.module_loading import module_has_submodule
from django_tenants.migration_executors import get_executor as tenants_get_executor
from django_tenants.migration_executors.base import MigrationExecutor, run_migrations
from django_tenants.migration_executors.standard import StandardExecutor
from django_tenants.signals import schema_migrated, schema_pre_migration

# Options that change what `migrate` does; with any of them set, the standard executor runs.
UNSUPPORTED_OPTIONS = (
    "app_label",
    "migration_name",
    "fake",
    "fake_initial",
    "plan",
    "check_unapplied",
    "prune",
    "run_syncdb",
)


def executor_for(codename: str | None = None) -> type[MigrationExecutor]:
    """settings.GET_EXECUTOR_FUNCTION: this executor unless another is named (`--executor`, or
    django-tenants' EXECUTOR environment variable)."""
    codename = codename or os.environ.get("EXECUTOR") or FastTenantExecutor.codename
    if codename == FastTenantExecutor.codename:
        return FastTenantExecutor
    return tenants_get_executor(codename)  # type: ignore[no-any-return]


class SchemaRecorder(MigrationRecorder):
    """Django's recorder, with `has_table` one index lookup for the current schema. Django's asks
    the introspection for every visible table (`pg_table_is_visible` over all of pg_class): with
    1,000 business schemas that scan of ~150,000 relations was most of each schema's time, twice
    per schema. Like django-tenants' introspection, only the schema itself counts."""

    def has_table(self) -> bool:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p'))",
                [self.connection.schema_name, self.Migration._meta.db_table],  # type: ignore[attr-defined]
            )
            row = cursor.fetchone()
        return bool(row and row[0])


@dataclass
class SchemaResult:
    schema_name: str
    applied: list[str] = field(default_factory=list)  # "app.migration" applied in this schema
    error: str | None = None  # the traceback, when it failed
    seconds: float = 0.0


@dataclass
class PlannedMigration:
    migration: Any
    # (operation, project state before it, project state after it), apps rendered, read-only
    steps: list[tuple[Operation, ProjectState, ProjectState]]


@dataclass
class PlannedStates:
    migrations: list[PlannedMigration]  # in the order Django applies them
    post_state: ProjectState  # after the last one


class SchemaMigrator:
    """One process's migration machinery, reused for every schema it migrates."""

    def __init__(self, database: str, verbosity: int, interactive: bool) -> None:
        self.database = database
        self.verbosity = verbosity
        self.interactive = interactive
        self.executor: Any = None  # django's MigrationExecutor (private parts used: typed Any)
        self.targets: list[tuple[str, str]] = []
        # frozenset of applied migration keys -> the project state they make, apps rendered
        self.pre_states: dict[frozenset[tuple[str, str]], ProjectState] = {}
        # (applied, plan) -> the states around each operation of the plan, and the final one
        self.planned: dict[tuple[frozenset[tuple[str, str]], tuple[tuple[str, str], ...]], PlannedStates] = {}
        # (applied, plan) -> the apps post_migrate receivers get
        self.post_apps: dict[tuple[frozenset[tuple[str, str]], tuple[tuple[str, str], ...]], Any] = {}
        self.out = sys.stdout

    @property
    def connection(self) -> Any:
        return connections[self.database]

    def prepare(self) -> Any:
        """What `migrate` builds per run, built once: management modules (their signal
        receivers), the loader and graph, the targets (every leaf, as `migrate` with no app)."""
        if self.executor is None:
            for app_config in global_apps.get_app_configs():
                if module_has_submodule(app_config.module, "management"):
                    import_module(".management", app_config.name)
            self.connection.prepare_database()
            executor = DjangoMigrationExecutor(self.connection)
            executor.recorder = SchemaRecorder(self.connection)
            conflicts = executor.loader.detect_conflicts()
            if conflicts:
                names = "; ".join(f"{', '.join(n)} in {app}" for app, n in conflicts.items())
                raise CommandError(f"Conflicting migrations detected; multiple leaf nodes in the graph: ({names}).")
            self.targets = executor.loader.graph.leaf_nodes()
            self.executor = executor
        return self.executor

    def migrate(self, schema_name: str, *, label: str) -> SchemaResult:
        result = SchemaResult(schema_name)
        started = time.perf_counter()
        # The loader's consistency check makes a recorder of its own: the fast one, meanwhile.
        loader_recorder = loader_module.MigrationRecorder  # type: ignore[attr-defined]
        loader_module.MigrationRecorder = SchemaRecorder  # type: ignore[misc,attr-defined]
        try:
            schema_pre_migration.send(run_migrations, schema_name=schema_name)
            self._migrate(schema_name, result, label)
            schema_migrated.send(run_migrations, schema_name=schema_name)
        except Exception:
            result.error = traceback.format_exc()
            # A failed atomic migration was rolled back by its own transaction; whatever a
            # non-atomic one left on the connection goes with it (not inside an outer atomic
            # block, as a test's: that one rolls back by itself).
            if not self.connection.in_atomic_block:
                self.connection.close()
        finally:
            loader_module.MigrationRecorder = loader_recorder  # type: ignore[misc,attr-defined]
            result.seconds = time.perf_counter() - started
            self.connection.set_schema_to_public()
        return result

    def _migrate(self, schema_name: str, result: SchemaResult, label: str) -> None:
        connection = self.connection
        # As django-tenants does: the schema's own django_migrations table first (without public
        # on the path, or public's table would be found), then the schema with public.
        connection.set_schema(schema_name, include_public=False)
        SchemaRecorder(connection).ensure_schema()
        connection.set_schema(schema_name)
        executor = self.prepare()
        loader = executor.loader
        if loader.replacements:
            # Squashed migrations: the graph depends on what is applied; rebuild it per schema.
            loader.build_graph()
            self.targets = loader.graph.leaf_nodes()
        else:
            loader.applied_migrations = executor.recorder.applied_migrations()
        loader.check_consistent_history(connection)
        plan = executor.migration_plan(self.targets)
        applied = frozenset(key for key in loader.applied_migrations if key in loader.graph.nodes)

        pre_state = self.pre_states.get(applied)
        if pre_state is None:
            pre_state = executor._create_project_state(with_applied_migrations=True)
            pre_state.apps  # noqa: B018 - render once; clones below copy the rendered apps
            self.pre_states[applied] = pre_state
        emit_pre_migrate_signal(self.verbosity, self.interactive, connection.alias, apps=pre_state.apps, plan=plan)

        plan_key = tuple((migration.app_label, migration.name) for migration, _backwards in plan)
        if plan and any(backwards for _migration, backwards in plan):
            raise CommandError(f"A backwards plan in {schema_name}: not a `migrate` to the leaf nodes.")
        planned = self.planned.get((applied, plan_key))
        if planned is None:
            planned = self._plan_states(pre_state, plan)
            self.planned[(applied, plan_key)] = planned
        self._apply(planned, result, schema_name, label)

        post_apps = self.post_apps.get((applied, plan_key))
        if post_apps is None:
            post_apps = self._post_migrate_apps(planned.post_state)  # used for nothing else
            self.post_apps[(applied, plan_key)] = post_apps
        emit_post_migrate_signal(self.verbosity, self.interactive, connection.alias, apps=post_apps, plan=plan)

    def _plan_states(self, pre_state: ProjectState, plan: list[tuple[Any, bool]]) -> PlannedStates:
        """The project states around every operation of the plan, as `Migration.apply` makes them
        (a clone before each operation, then its `state_forwards`), made once for every schema
        with the same applied migrations. `state_forwards` of an AlterField of a foreign key
        re-renders the models related to its target, i.e. to the user model most of them: the
        11 of the `*_no_constraints_into_public` migrations cost ~1 CPU-s per schema when every
        schema made them again."""
        executor = self.prepare()
        # In the order Django's _migrate_all_forwards applies them: that of the full plan.
        full_plan = executor.migration_plan(executor.loader.graph.leaf_nodes(), clean_start=True)
        to_run = {migration for migration, _backwards in plan}
        state = pre_state.clone()
        migrations: list[PlannedMigration] = []
        for migration, _backwards in full_plan:
            if migration not in to_run:
                continue
            state.apps  # noqa: B018 - rendered before each migration, as Django does
            steps: list[tuple[Operation, ProjectState, ProjectState]] = []
            before = state.clone()
            for operation in migration.operations:
                operation.state_forwards(migration.app_label, state)
                after = state.clone()  # the next operation mutates `state`; this stays as it is
                steps.append((operation, before, after))
                before = after
            migrations.append(PlannedMigration(migration, steps))
        return PlannedStates(migrations, state)

    def _apply(self, planned: PlannedStates, result: SchemaResult, schema_name: str, label: str) -> None:
        """Django's `MigrationExecutor.apply_migration` and `Migration.apply` for one schema, with
        the states made once: per schema only the DDL (each operation's `database_forwards`, on
        this schema's search path) and the `django_migrations` row."""
        executor = self.executor
        connection = self.connection
        if planned.migrations:
            executor.recorder.ensure_schema()
        self._forget_schema_caches(planned)
        for planned_migration in planned.migrations:
            migration = planned_migration.migration
            recorded = False
            with connection.schema_editor(atomic=migration.atomic) as schema_editor:
                for operation, before, after in planned_migration.steps:
                    atomic_operation = operation.atomic or (migration.atomic and operation.atomic is not False)
                    if not schema_editor.atomic_migration and atomic_operation:
                        # As Migration.apply: an atomic operation inside a non-atomic migration.
                        with transaction.atomic(connection.alias):
                            operation.database_forwards(migration.app_label, schema_editor, before, after)
                    else:
                        operation.database_forwards(migration.app_label, schema_editor, before, after)
                if not schema_editor.deferred_sql:
                    executor.record_migration(migration.app_label, migration.name)
                    recorded = True
            if not recorded:  # deferred SQL runs when the schema editor exits: record after it
                executor.record_migration(migration.app_label, migration.name)
            result.applied.append(f"{migration.app_label}.{migration.name}")
            if self.verbosity >= 1:
                self.out.write(f"[{label}:{schema_name}] Applied {migration.app_label}.{migration.name}\n")
        if planned.migrations and executor.loader.replacements:
            executor.check_replacements()

    @staticmethod
    def _forget_schema_caches(planned: PlannedStates) -> None:
        """The historical models are shared by every schema; the one cache of rows they carry,
        the content types' (a RunPython's `ContentType.objects.get_for_model`), belongs to the
        previous schema."""
        for planned_migration in planned.migrations:
            for _operation, before, _after in planned_migration.steps:
                if "apps" in before.__dict__:
                    try:
                        content_type = before.apps.get_model("contenttypes", "ContentType")
                    except LookupError:
                        continue
                    clear_cache = getattr(content_type.objects, "clear_cache", None)
                    if clear_cache is not None:  # ContentTypeManager (use_in_migrations)
                        clear_cache()

    @staticmethod
    def _post_migrate_apps(post_state: ProjectState) -> Any:
        """As `migrate` hands post_migrate receivers: the final state, real apps re-rendered."""
        post_state.clear_delayed_apps_cache()
        post_apps = post_state.apps
        with post_apps.bulk_update():
            model_keys = []
            for model_state in post_apps.real_models:
                model_key = model_state.app_label, model_state.name_lower
                model_keys.append(model_key)
                post_apps.unregister_model(*model_key)
        post_apps.render_multiple([ModelState.from_model(global_apps.get_model(*model)) for model in model_keys])
        return post_apps


# --- worker processes (fork): one SchemaMigrator each, reused for every schema they take ---------

_worker: SchemaMigrator | None = None
_stop: Any = None


def _worker_init(database: str, verbosity: int, interactive: bool, stop: Any) -> None:
    global _worker, _stop
    _worker = SchemaMigrator(database, verbosity, interactive)
    _stop = stop


def _worker_migrate(task: tuple[int, int, str]) -> SchemaResult | None:
    index, count, schema_name = task
    assert _worker is not None
    if _stop.is_set():
        return None  # stopped after too many failures: never started
    return _worker.migrate(schema_name, label=f"{index + 1}/{count}")


class FastTenantExecutor(MigrationExecutor):
    codename = "parley"

    def run_migrations(self, tenants: Any = None) -> None:
        tenants = list(tenants or [])
        if self.PUBLIC_SCHEMA_NAME in tenants:
            run_migrations(self.args, self.options, self.codename, self.PUBLIC_SCHEMA_NAME)
            tenants.remove(self.PUBLIC_SCHEMA_NAME)
        if not tenants:
            return
        if self.args or any(self.options.get(name) for name in UNSUPPORTED_OPTIONS):
            StandardExecutor(self.args, self.options).run_migrations(tenants=tenants)
            return
        if not self.options.get("skip_checks"):
            BaseCommand().check(databases=[self.TENANT_DB_ALIAS])  # once, not once per schema
        verbosity = int(self.options.get("verbosity", 1))
        interactive = bool(self.options.get("interactive", False))
        processes = min(int(getattr(settings, "TENANT_MULTIPROCESSING_MAX_PROCESSES", 2)), len(tenants))
        max_failures = max(1, int(getattr(settings, "PARLEY_MIGRATION_MAX_FAILURES", 10)))
        started = time.perf_counter()
        results: list[SchemaResult] = []
        not_started: list[str] = []
        tasks = [(index, len(tenants), name) for index, name in enumerate(tenants)]
        # Forking pays off from a few dozen schemas; below that (tests, a single new business)
        # everything runs here. So it does inside an open transaction (a caller's atomic block):
        # its connection cannot be closed for the children, which would inherit it as open and
        # refuse to connect ("Cannot open a new connection in an atomic block"), or wait on the
        # rows and schemas it holds uncommitted.
        in_transaction = any(c.in_atomic_block for c in connections.all(initialized_only=True))
        fork_from = int(getattr(settings, "PARLEY_MIGRATION_FORK_FROM", 20))
        if processes > 1 and len(tenants) >= fork_from and not in_transaction:
            # No connection may be shared with the children: close this process's connections
            # and its psycopg pool (a forked pool would hand the same sockets to every child).
            connections.close_all()
            for connection in connections.all(initialized_only=True):
                if connection.alias in getattr(connection, "_connection_pools", {}):
                    connection.close_pool()  # type: ignore[attr-defined]
            context = multiprocessing.get_context("fork")
            stop = context.Event()
            with context.Pool(processes, _worker_init, (self.TENANT_DB_ALIAS, verbosity, interactive, stop)) as pool:
                for task, result in zip(tasks, pool.imap(_worker_migrate, tasks, chunksize=4), strict=True):
                    if result is None:
                        not_started.append(task[2])
                        continue
                    self._report(result)
                    results.append(result)
                    if sum(1 for r in results if r.error) >= max_failures:
                        stop.set()
                pool.close()
                pool.join()
        else:
            migrator = SchemaMigrator(self.TENANT_DB_ALIAS, verbosity, interactive)
            for index, count, name in tasks:
                if sum(1 for r in results if r.error) >= max_failures:
                    not_started.append(name)
                    continue
                result = migrator.migrate(name, label=f"{index + 1}/{count}")
                self._report(result)
                results.append(result)
        failed = [r for r in results if r.error]
        if verbosity >= 1:
            changed = sum(1 for r in results if r.applied)
            sys.stdout.write(
                f"[{self.codename}] {len(results) - len(failed)} of {len(tenants)} schemas migrated "
                f"({changed} changed) in {time.perf_counter() - started:.1f} s with {processes} process(es)\n"
            )
        if failed or not_started:
            lines = [f"Tenant migrations failed in {len(failed)} of {len(tenants)} schemas:"]
            lines += [f"  {r.schema_name}: {(r.error or '').strip().splitlines()[-1]}" for r in failed]
            if not_started:
                shown = ", ".join(not_started[:20]) + (", …" if len(not_started) > 20 else "")
                lines.append(
                    f"Stopped after {max_failures} failures (PARLEY_MIGRATION_MAX_FAILURES): "
                    f"{len(not_started)} schemas not started: {shown}"
                )
            lines.append("Each failed migration was rolled back in its schema; re-run to apply what is missing.")
            raise CommandError("\n".join(lines))

    @staticmethod
    def _report(result: SchemaResult) -> None:
        if result.error:
            sys.stderr.write(f"[parley:{result.schema_name}] migration FAILED:\n{result.error}\n")
            sys.stderr.flush()

    def run_multi_type_migrations(self, tenants: Any) -> None:
        StandardExecutor(self.args, self.options).run_multi_type_migrations(tenants)
