import uuid
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone
from procrastinate.contrib.django import app
from procrastinate.contrib.django.models import ProcrastinateJob
from procrastinate.exceptions import AlreadyEnqueued, TaskNotFound

from config.jobs import defer_atomic, defer_job
from notifications.jobs import webhook_dispatch, webhook_dispatch_all
from tenancy.models import Business
from tests.conftest import World
from tests.jobs import run_queued_jobs

RESULTS: list[str] = []


@app.task(name="tests.record", queue="tests")
def record(value: str) -> None:
    RESULTS.append(value)


def test_worker_runs_committed_job(live_db: World) -> None:
    record.defer(value="hello")
    run_queued_jobs(queues=["tests"])
    assert RESULTS == ["hello"]
    assert ProcrastinateJob.objects.filter(task_name="tests.record", status="succeeded").exists()


# --- config.jobs.defer_job: the one way to queue a job by its task name ---------------------------


def _waiting(task_name: str, lock: str) -> int:
    return ProcrastinateJob.objects.filter(task_name=task_name, queueing_lock=lock, status="todo").count()


def test_defer_job_queues_the_registered_task_in_the_callers_transaction(world: World) -> None:
    at = timezone.now() + timedelta(hours=1)
    assert defer_job("tests.record", schedule_at=at, value="later") is True
    job = ProcrastinateJob.objects.filter(task_name="tests.record").latest("id")
    assert job.queue_name == "tests" and job.args == {"value": "later"} and job.scheduled_at == at
    with pytest.raises(TaskNotFound):
        defer_job("tests.recrod", value="typo")


def test_defer_atomic_queues_many_jobs_in_one_statement_in_order(world: World) -> None:
    lock = f"tests:{uuid.uuid4().hex}"
    defer_atomic("tests.record", [({"value": f"v{n}", "n": n}, lock if n == 2 else None) for n in range(5)])
    jobs = list(ProcrastinateJob.objects.filter(task_name="tests.record").order_by("-id")[:5])[::-1]
    assert [j.args for j in jobs] == [{"value": f"v{n}", "n": n} for n in range(5)]
    assert [j.queueing_lock for j in jobs] == [None, None, lock, None, None]
    assert {(j.queue_name, j.status, j.priority, j.lock) for j in jobs} == {("tests", "todo", 0, None)}


def test_a_waiting_job_under_the_same_lock_is_kept(world: World) -> None:
    lock = f"tests:{uuid.uuid4().hex}"
    assert defer_job("tests.record", queueing_lock=lock, value="first") is True
    assert defer_job("tests.record", queueing_lock=lock, skip_if_queued=True, value="second") is False
    # The refusal ran in a savepoint: the caller's transaction still works.
    assert _waiting("tests.record", lock) == 1
    with pytest.raises((AlreadyEnqueued, IntegrityError)), transaction.atomic():
        defer_job("tests.record", queueing_lock=lock, value="third")


def test_the_periodic_fan_out_goes_on_past_a_business_whose_job_still_waits(world: World) -> None:
    """Every minute each business gets a webhook dispatch job; one still waiting (a slow worker)
    must not stop the others from being queued. It did: AlreadyEnqueued ended the loop."""
    schemas = list(Business.objects.exclude(schema_name="public").values_list("schema_name", flat=True))
    others = [s for s in schemas if s != world.business_b.schema_name]
    for schema_name in others:
        lock = f"webhook_dispatch:{schema_name}"
        if not _waiting(webhook_dispatch.name, lock):
            defer_job(webhook_dispatch.name, queueing_lock=lock, schema_name=schema_name)
    webhook_dispatch_all(timestamp=0)
    assert _waiting(webhook_dispatch.name, f"webhook_dispatch:{world.business_b.schema_name}") == 1
    assert all(_waiting(webhook_dispatch.name, f"webhook_dispatch:{s}") == 1 for s in others)
