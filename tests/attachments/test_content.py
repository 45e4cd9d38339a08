"""Type sniffing by content, size limits, EXIF stripping and thumbnails (attachments.content
and the upload service)."""

from __future__ import annotations

import io
import os
import uuid

import pytest
from django.core.files.storage import storages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django_tenants.utils import tenant_context
from PIL import Image

from attachments import content
from attachments.errors import AttachmentError, AttachmentErrorCode
from attachments.models import Attachment
from attachments.services import attachment_upload
from tests.attachments.files import HTML, OGG, PDF, jpeg_with_location, png
from tests.conftest import World


def fresh_uploader() -> str:
    # Uploads are limited per uploader (test_upload_limit.py): each test uploads as someone new.
    return f"customer:{uuid.uuid4().int % 10**12}"


def upload(world: World, name: str, data: bytes, uploader_key: str = "", **kwargs: object) -> Attachment:
    with tenant_context(world.business_a):
        attachment, _created = attachment_upload(
            business=world.business_a,
            uploader_key=uploader_key or fresh_uploader(),
            file=SimpleUploadedFile(name, data, content_type="application/octet-stream"),
            **kwargs,  # type: ignore[arg-type]
        )
        return attachment


def test_a_png_renamed_pdf_is_an_image(world: World) -> None:
    attachment = upload(world, "invoice.pdf", png())
    assert (attachment.kind, attachment.content_type) == ("image", "image/png")
    assert attachment.name == "invoice.png"  # the extension of what it is
    assert (attachment.width, attachment.height) == (64, 48)


def test_an_html_file_renamed_jpg_is_refused(world: World) -> None:
    with pytest.raises(AttachmentError) as refused:
        upload(world, "holiday.jpg", HTML)
    assert refused.value.code == AttachmentErrorCode.UNSUPPORTED_TYPE
    with tenant_context(world.business_a):
        assert not Attachment.objects.filter(name__startswith="holiday").exists()


@pytest.mark.parametrize(
    ("data", "kind", "content_type"),
    [
        (PDF, "document", "application/pdf"),
        (OGG, "audio", "audio/ogg"),
        (b"ID3\x04" + b"\x00" * 64, "audio", "audio/mpeg"),
    ],
)
def test_documents_and_audio_are_recognised_by_their_magic_bytes(data: bytes, kind: str, content_type: str) -> None:
    sniffed = content.sniff(data)
    assert (sniffed.kind, sniffed.content_type) == (kind, content_type)


@pytest.mark.parametrize("data", [b"", b"MZ\x90\x00 an exe", b"plain words", b"\x89PNG\r\n\x1a\n truncated", b"GIF89a"])
def test_everything_else_is_refused(data: bytes) -> None:
    with pytest.raises(AttachmentError) as refused:
        content.sniff(data)
    assert refused.value.code in (AttachmentErrorCode.UNSUPPORTED_TYPE, AttachmentErrorCode.EMPTY)


def test_size_limits_are_per_type(world: World, settings: object) -> None:
    limits = {"image": 2 * 1024 * 1024, "document": 1024 * 1024, "audio": 1024 * 1024}
    big_pdf = PDF + b"%" * (1024 * 1024)
    with override_settings(PARLEY_ATTACHMENT_LIMITS=limits):
        with pytest.raises(AttachmentError) as refused:
            upload(world, "big.pdf", big_pdf)
        assert refused.value.code == AttachmentErrorCode.TOO_LARGE and refused.value.http_status == 413
        assert "1 MB" in refused.value.message
        # The same number of bytes is fine as an image (its own, larger limit).
        noisy = Image.frombytes("RGB", (700, 700), os.urandom(700 * 700 * 3))  # noise does not compress
        out = io.BytesIO()
        noisy.save(out, "PNG")
        assert 1024 * 1024 < len(out.getvalue()) < 2 * 1024 * 1024
        assert upload(world, "noise.png", out.getvalue()).kind == "image"
        # Larger than every limit: refused before it is read.
        with pytest.raises(AttachmentError):
            upload(world, "huge.pdf", PDF + b"%" * (3 * 1024 * 1024))


def test_exif_and_its_location_are_stripped_and_a_thumbnail_made(world: World) -> None:
    original = jpeg_with_location()
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(0x8825)  # the fixture has a location
    attachment = upload(world, "parcel.jpg", original)
    storage = storages["attachments"]
    with storage.open(attachment.path) as stored:
        data = stored.read()
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and image.size == (120, 80)
    assert not image.getexif()  # no EXIF at all: no GPS, no maker, no software
    assert b"PhoneMaker" not in data and b"GPS" not in data
    assert attachment.thumbnail_path and attachment.path.startswith(f"{world.business_a.schema_name}/")
    with storage.open(attachment.thumbnail_path) as thumb:
        assert Image.open(thumb).format == "WEBP"


def test_a_decompression_bomb_is_refused() -> None:
    out = io.BytesIO()
    Image.new("1", (10000, 10000)).save(out, "PNG")  # tiny file, 100 megapixels
    with pytest.raises(AttachmentError) as refused:
        content.sniff(out.getvalue())
    assert refused.value.code == AttachmentErrorCode.TOO_LARGE


def test_a_retried_upload_with_the_same_key_is_the_same_attachment(world: World) -> None:
    uploader = fresh_uploader()
    first = upload(world, "a.png", png(), uploader, upload_key="retry-1")
    again = upload(world, "a.png", png(), uploader, upload_key="retry-1")
    other = upload(world, "a.png", png(), uploader, upload_key="retry-2")
    assert first.pk == again.pk != other.pk
    with tenant_context(world.business_a):
        assert Attachment.objects.filter(uploader_key=uploader, upload_key="retry-1").count() == 1
