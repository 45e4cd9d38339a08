"""The one place attachments' bytes go: Django's storage API, the `attachments` entry of
STORAGES — a private folder (never served by /media/) by default, an S3-compatible bucket through
django-storages when PARLEY_S3_BUCKET is set (config/settings.py). Keys start with the business's
schema, so one business's files never share a prefix with another's."""

from __future__ import annotations

import uuid

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.utils import timezone


def attachment_storage() -> Storage:
    return storages["attachments"]


def new_path(*, schema_name: str, extension: str, suffix: str = "") -> str:
    now = timezone.now()
    return f"{schema_name}/{now:%Y/%m}/{uuid.uuid4().hex}{suffix}.{extension}"


def store(path: str, data: bytes) -> str:
    return attachment_storage().save(path, ContentFile(data))


def remove(*paths: str) -> None:
    storage = attachment_storage()
    for path in paths:
        if path:
            storage.delete(path)
