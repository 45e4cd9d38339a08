"""What a file is, decided by its content, never by its name or the browser's claim; and the
image work: EXIF removed (location included) by re-encoding, thumbnails. Pillow decodes images;
PDF and audio are recognised by their magic bytes."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from django.conf import settings
from django.utils.translation import gettext as _
from PIL import Image, ImageOps, UnidentifiedImageError

from attachments.errors import AttachmentError, AttachmentErrorCode

# A decompression bomb (a small file that decodes to gigapixels) is refused, not a warning.
MAX_IMAGE_PIXELS = 40_000_000
THUMBNAIL_SIZE = (480, 480)

_IMAGE_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "application/pdf": "pdf",
    "audio/ogg": "ogg",
    "audio/mpeg": "mp3",
    "audio/mp4": "m4a",
    "audio/wav": "wav",
    "audio/amr": "amr",
}


@dataclass(frozen=True)
class Sniffed:
    kind: str  # Attachment.Kind value
    content_type: str

    @property
    def extension(self) -> str:
        return _EXTENSIONS[self.content_type]


def _audio_type(head: bytes) -> str | None:
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    if head[4:8] == b"ftyp" and head[8:11] in (b"M4A", b"M4B", b"mp4", b"iso"):
        return "audio/mp4"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"#!AMR"):
        return "audio/amr"
    return None


def sniff(data: bytes) -> Sniffed:
    """The file's kind and type from its bytes. Anything else (HTML, scripts, executables, a
    renamed file of another type) is refused."""
    if not data:
        raise AttachmentError(AttachmentErrorCode.EMPTY, _("The file is empty."))
    head = data[:64]
    if head.startswith(b"%PDF-"):
        return Sniffed("document", "application/pdf")
    audio = _audio_type(head)
    if audio is not None:
        return Sniffed("audio", audio)
    image_format = _image_format(data)
    if image_format is not None:
        return Sniffed("image", _IMAGE_FORMATS[image_format])
    raise AttachmentError(
        AttachmentErrorCode.UNSUPPORTED_TYPE,
        _("This kind of file cannot be sent. Send a photo (JPEG, PNG, WebP), a PDF or an audio recording."),
    )


def _open(data: bytes) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise AttachmentError(AttachmentErrorCode.TOO_LARGE, _("This image has too many pixels."))
        return image


def _image_format(data: bytes) -> str | None:
    try:
        image = _open(data)
        image_format = image.format
        image.verify()  # reads the whole file: a truncated or forged image fails here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    except Image.DecompressionBombWarning:
        raise AttachmentError(AttachmentErrorCode.TOO_LARGE, _("This image has too many pixels.")) from None
    return image_format if image_format in _IMAGE_FORMATS else None


def size_limit(kind: str) -> int:
    return int(settings.PARLEY_ATTACHMENT_LIMITS[kind])


def check_size(kind: str, size: int) -> None:
    limit = size_limit(kind)
    if size > limit:
        raise AttachmentError(
            AttachmentErrorCode.TOO_LARGE,
            _("This file is too large: %(kind)s files can be at most %(mb)s MB.")
            % {"kind": kind_label(kind), "mb": limit // (1024 * 1024)},
        )


def kind_label(kind: str) -> str:
    return {"image": _("image"), "document": _("document"), "audio": _("audio")}.get(kind, kind)


@dataclass(frozen=True)
class CleanImage:
    data: bytes
    thumbnail: bytes
    width: int
    height: int


def clean_image(data: bytes, content_type: str) -> CleanImage:
    """Re-encode without any metadata (EXIF with its GPS location, XMP, comments), turned upright
    first since the orientation tag goes too; and a WebP thumbnail."""
    image = _open(data)
    image.load()
    image = ImageOps.exif_transpose(image)
    out = io.BytesIO()
    fmt = {v: k for k, v in _IMAGE_FORMATS.items()}[content_type]
    if fmt == "JPEG":
        image.convert("RGB").save(out, "JPEG", quality=88, optimize=True)
    elif fmt == "PNG":
        image.save(out, "PNG", optimize=True)
    else:
        image.save(out, "WEBP", quality=88)
    thumb = image.copy()
    thumb.thumbnail(THUMBNAIL_SIZE)
    if thumb.mode not in ("RGB", "RGBA"):
        thumb = thumb.convert("RGBA" if "A" in thumb.getbands() or thumb.mode == "P" else "RGB")
    thumb_out = io.BytesIO()
    thumb.save(thumb_out, "WEBP", quality=80)
    return CleanImage(out.getvalue(), thumb_out.getvalue(), image.width, image.height)


def clean_name(name: str, extension: str) -> str:
    """The name people see: the uploader's, without path or control characters, with the
    extension of what the file really is."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable() and ch not in '<>:"|?*').strip(" .")
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return f"{(stem or 'file')[:150]}.{extension}"
