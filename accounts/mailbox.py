"""Development email: mails are stored in PostgreSQL and read at /dev/mailbox/ instead of
being sent, so sign-up confirmations and invitations work without a mail server or a
terminal. Selected with EMAIL_BACKEND=accounts.mailbox.MailboxBackend (the default while DEBUG)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from accounts.models import MailboxMessage


class MailboxBackend(BaseEmailBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        stored = [self._row(message) for message in email_messages if message.recipients()]
        MailboxMessage.objects.bulk_create(stored)
        return len(stored)

    @staticmethod
    def _row(message: EmailMessage) -> MailboxMessage:
        html = ""
        alternatives: Any = getattr(message, "alternatives", []) or []
        for alternative in alternatives:
            content, mimetype = alternative[0], alternative[1]
            if mimetype == "text/html":
                html = str(content)
        body = message.body
        if message.content_subtype == "html":
            html, body = str(body), ""
        return MailboxMessage(
            to=", ".join(message.recipients())[:2000],
            subject=str(message.subject)[:300],
            body=str(body),
            html_body=html,
        )
