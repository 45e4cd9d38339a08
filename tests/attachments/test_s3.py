"""The S3 backend (django-storages) against a local S3-compatible server: moto's server mode,
started here. The same upload, signed URL and removal paths as the folder backend."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django_tenants.utils import tenant_context

from attachments.services import attachment_upload
from messaging.services import message_delete, message_send_customer
from tests.attachments.files import PDF, jpeg_with_location
from tests.attachments.test_access import fetch
from tests.conftest import World, business_client, free_port
from tests.messaging.conftest import make_customer
from tests.messaging.test_pages import signed_in

boto3 = pytest.importorskip("boto3")
BUCKET = "parley-test-attachments"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ),
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("moto's server did not start")
            time.sleep(0.1)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="eu-central-1"
    )
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    yield endpoint
    process.terminate()
    process.wait(10)


@pytest.fixture
def s3(s3_endpoint: str) -> Iterator[Any]:
    options = {
        "bucket_name": BUCKET,
        "endpoint_url": s3_endpoint,
        "region_name": "eu-central-1",
        "access_key": "test",
        "secret_key": "test",
        "location": "attachments",
        "default_acl": "private",
        "file_overwrite": False,
    }
    storage = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options}
    from django.conf import settings

    with override_settings(STORAGES={**settings.STORAGES, "attachments": storage}):
        yield boto3.client(
            "s3",
            endpoint_url=s3_endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="eu-central-1",
        )


def keys(client: Any) -> set[str]:
    return {item["Key"] for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def test_files_live_in_the_bucket_under_the_business_and_are_served_signed(
    world: World, s3: Any, django_capture_on_commit_callbacks: Any
) -> None:
    customer = make_customer("Sia")
    with tenant_context(world.business_a):
        photo, _ = attachment_upload(
            business=world.business_a,
            uploader_key=f"customer:{customer.pk}",
            file=SimpleUploadedFile("p.jpg", jpeg_with_location()),
            upload_key="s3-1",
        )
        document, _ = attachment_upload(
            business=world.business_a, uploader_key=f"customer:{customer.pk}", file=SimpleUploadedFile("d.pdf", PDF)
        )
        message = message_send_customer(
            business=world.business_a, customer=customer, body="", attachment_id=document.pk
        ).message
    stored = keys(s3)
    schema = world.business_a.schema_name
    assert {
        f"attachments/{photo.path}",
        f"attachments/{photo.thumbnail_path}",
        f"attachments/{document.path}",
    } <= stored
    assert all(key.startswith(f"attachments/{schema}/") for key in stored if photo.path[:8] in key)
    body = s3.get_object(Bucket=BUCKET, Key=f"attachments/{photo.path}")["Body"].read()
    assert b"GPS" not in body  # stripped before it reached the bucket
    client = signed_in(business_client(world.business_a), customer)
    assert fetch(client, f"/attachments/{document.pk}/")[:2] == (200, PDF)
    # Deleting the message removes its file from the bucket (after commit).
    with tenant_context(world.business_a), django_capture_on_commit_callbacks(execute=True):
        message_delete(business=world.business_a, message_id=message.pk, customer=customer)
    assert f"attachments/{document.path}" not in keys(s3)
    assert client.get(f"/attachments/{document.pk}/").status_code == 410  # gone, and says so
