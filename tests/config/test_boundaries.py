"""Who may import whom, read from the source: the seams issue 8 names stay closed."""

from __future__ import annotations

import ast
from pathlib import Path

from django.conf import settings

APPS = ["accounts", "audit", "tenancy", "verification", "customers", "directory", "messaging", "billing", "attachments"]
ROOT = Path(settings.BASE_DIR)


def imports(module: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text(), str(module))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def app_modules(app: str) -> list[Path]:
    return [path for path in (ROOT / app).rglob("*.py") if "migrations" not in path.parts]


def test_no_views_module_imports_another_apps_views() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for app in APPS
        for path in app_modules(app)
        for name in imports(path)
        if name.endswith(".views") and name.split(".")[0] in APPS and name.split(".")[0] != app
    ]
    assert offenders == []


def test_the_tenant_core_knows_no_feature_app() -> None:
    """tenancy is below every feature: the apps register with it (dashboard notices), and
    config composes them (the demo), never the other way round."""
    features = {"verification", "customers", "directory", "messaging", "billing"}
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in app_modules("tenancy")
        for name in imports(path)
        if name.split(".")[0] in features
    ]
    assert offenders == []


def test_services_queue_their_jobs_by_name_not_by_import() -> None:
    """Jobs call services; services defer jobs by task name, so the two never import each other."""
    offenders = [
        f"{app}.services imports {app}.jobs"
        for app in APPS
        if (ROOT / app / "services.py").exists()
        and any(
            name == f"{app}.jobs" or name.startswith(f"{app}.jobs.") for name in imports(ROOT / app / "services.py")
        )
    ]
    assert offenders == []


def test_pages_api_and_dashboard_read_through_selectors() -> None:
    """Views, API views, dashboard figures and notices ask selectors (reads) and services (writes):
    none of them builds a query of its own."""
    apps = [*APPS, "notifications", "template_reviews", "config"]
    patterns = ("views.py", "*_views.py", "api/*.py", "dashboard.py", "notices.py")
    offenders = []
    for app in apps:
        for path in {p for pattern in patterns for p in (ROOT / app).glob(pattern)}:
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Attribute) and node.attr in {"objects", "cursor", "raw"}:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} uses .{node.attr}")
                elif isinstance(node, ast.Name) and node.id in {"get_object_or_404", "get_list_or_404"}:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} uses {node.id}")
    assert sorted(offenders) == []


def test_jobs_are_deferred_by_name_one_way() -> None:
    """config.jobs.defer_job is the only place that configures a task for deferring."""
    offenders = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for app in [*APPS, "notifications", "template_reviews", "config"]
        for path in app_modules(app)
        if path != ROOT / "config" / "jobs.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Attribute) and node.attr in {"configure_task", "configure"}
    ]
    assert offenders == []
