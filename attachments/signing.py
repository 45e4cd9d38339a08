"""Short-lived signed URLs for private files. The token names the business (its schema), the
attachment, the variant (file or thumbnail) and the viewer it was made for; the serving view
refuses a token of another business's host, an expired one, and one made for someone else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import signing

SALT = "attachments.signed-url"
VARIANTS = ("file", "thumbnail")


@dataclass(frozen=True)
class FileGrant:
    schema_name: str
    attachment_id: int
    variant: str
    viewer: str  # "customer:<id>" or "user:<id>"


def url_seconds() -> int:
    return int(settings.PARLEY_ATTACHMENT_URL_SECONDS)


def signed_url(grant: FileGrant) -> str:
    token = signing.dumps(
        {"s": grant.schema_name, "a": grant.attachment_id, "v": grant.variant, "w": grant.viewer}, salt=SALT
    )
    return f"/attachments/f/{token}/"


class GrantRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "expired" or "invalid"


def grant_from_token(token: str) -> FileGrant:
    try:
        data: Any = signing.loads(token, salt=SALT, max_age=url_seconds())
    except signing.SignatureExpired:
        raise GrantRefused("expired") from None
    except signing.BadSignature:
        raise GrantRefused("invalid") from None
    try:
        grant = FileGrant(str(data["s"]), int(data["a"]), str(data["v"]), str(data["w"]))
    except (KeyError, TypeError, ValueError):
        raise GrantRefused("invalid") from None
    if grant.variant not in VARIANTS:
        raise GrantRefused("invalid")
    return grant
