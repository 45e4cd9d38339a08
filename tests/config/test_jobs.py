from procrastinate.contrib.django import app
from procrastinate.contrib.django.models import ProcrastinateJob

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
