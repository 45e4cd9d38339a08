"""Reliability check 7: schemathesis fuzzes the public API from its own OpenAPI schema
(/api/v1/schema/) against a live server, with a real API key of business A: no request may get
a 5xx. Every refusal is a 4xx application/problem+json (messaging/api/base.py).

`make test` runs a short pass (a few examples per operation); `make reliability` a long one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest
from django_tenants.utils import tenant_context

from notifications.services import api_key_create
from reliability.report import long_run, record
from tests.conftest import ROOT, World, free_port, start_server, stop_server, unique

pytestmark = [pytest.mark.reliability]
SHORT_EXAMPLES = 8
LONG_EXAMPLES = 150


def schemathesis_command() -> list[str]:
    return [str(Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "schemathesis")]


def test_api_fuzzing_finds_no_5xx(live_db: World) -> None:
    business = live_db.business_a
    examples = int(os.environ.get("PARLEY_FUZZ_EXAMPLES", LONG_EXAMPLES if long_run() else SHORT_EXAMPLES))
    with tenant_context(business):
        key = api_key_create(
            business=business, actor=live_db.owner_a, name=unique("fuzz"), scopes=["send", "read"]
        ).secret
    server = start_server(free_port(), name="fuzz")
    base = f"http://127.0.0.1:{server.port}"
    headers = {"Host": business.host}
    try:
        schema = httpx.get(
            f"{base}/api/v1/schema/", headers={**headers, "Accept": "application/vnd.oai.openapi+json"}, timeout=30
        )
        assert schema.status_code == 200, schema.text[:500]
        operations = sum(
            1
            for item in schema.json()["paths"].values()
            for method in item
            if method in ("get", "post", "put", "patch", "delete")
        )
        with tempfile.TemporaryDirectory(prefix="sec_fuzz_") as tmp:
            schema_file = Path(tmp) / "openapi.json"
            schema_file.write_text(json.dumps(schema.json()))
            result = subprocess.run(
                [
                    *schemathesis_command(),
                    "run",
                    str(schema_file),
                    "--url",
                    base,
                    "-H",
                    f"Host: {business.host}",
                    "-H",
                    f"Authorization: Bearer {key}",
                    "--checks",
                    "not_a_server_error",
                    "--max-examples",
                    str(examples),
                    "--seed",
                    "10",
                    "--continue-on-failure",
                    "--request-timeout",
                    "30",
                    "--workers",
                    "2",
                    "--no-color",
                ],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=3600,
                check=False,
            )
        log = server.log_path.read_text(errors="replace")
    finally:
        stop_server(server)
    output = result.stdout + result.stderr
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "schemathesis.txt").write_text(output)
    server_errors = len(re.findall(r'" 5\d\d ', log))
    cases = re.search(r"(\d+) generated", output)
    summary = next((line.strip() for line in reversed(output.splitlines()) if "passed" in line or "failed" in line), "")
    passed = result.returncode == 0 and server_errors == 0
    record(
        check="7. API fuzzing",
        tried=f"schemathesis {examples} examples per operation (+ its coverage and stateful phases) over "
        f"{operations} operations of /api/v1/schema/, real API key of business A, live server",
        result=f"{cases.group(1) if cases else '?'} test cases; {server_errors} 5xx in the server log; "
        f"schemathesis: {summary or 'exit ' + str(result.returncode)}",
        passed=passed,
    )
    assert result.returncode == 0, output[-6000:]
    assert server_errors == 0, "5xx in the server log (test-artifacts/fuzz-*.log)"
