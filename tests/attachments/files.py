"""Files for the attachment tests, made on the spot (Pillow for images, bytes for the rest)."""

from __future__ import annotations

import io

from PIL import Image

PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Count 0/Kids[]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"
OGG = b"OggS\x00\x02" + b"\x00" * 200


def png(size: tuple[int, int] = (64, 48), color: str = "#1f7a4d") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def jpeg_with_location(size: tuple[int, int] = (120, 80)) -> bytes:
    """A photo whose EXIF says where it was taken (GPS) and who took it."""
    image = Image.new("RGB", size, "#c0392b")
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0131] = "Camera 1.0"  # Software
    gps = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
    exif[0x8825] = gps  # GPSInfo
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    return out.getvalue()
