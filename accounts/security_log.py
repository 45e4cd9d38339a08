"""Security events that allauth performs on our behalf go into the audit log.

allauth owns these flows (passwords, email, two-factor), so its signals are the one place to
observe them; each receiver only records, it decides nothing.
"""

from __future__ import annotations

from typing import Any

from allauth.account import signals as account_signals
from allauth.mfa import signals as mfa_signals
from django.dispatch import receiver

from audit.services import audit_record


def _client_ip(request: Any) -> str:
    return str(getattr(request, "META", {}).get("REMOTE_ADDR", "")) if request is not None else ""


@receiver(account_signals.user_signed_up)
def _signed_up(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    audit_record(action="user.signed_up", actor=user, target=user.email, data={"ip": _client_ip(request)})


@receiver(account_signals.password_changed)
@receiver(account_signals.password_set)
@receiver(account_signals.password_reset)
def _password_changed(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    audit_record(action="user.password_changed", actor=user, target=user.email, data={"ip": _client_ip(request)})


@receiver(account_signals.email_changed)
def _email_changed(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    audit_record(action="user.email_changed", actor=user, target=user.email)


@receiver(mfa_signals.authenticator_added)
def _mfa_added(sender: Any, request: Any, user: Any, authenticator: Any, **kwargs: Any) -> None:
    audit_record(action="user.mfa_added", actor=user, target=user.email, data={"type": authenticator.type})


@receiver(mfa_signals.authenticator_removed)
def _mfa_removed(sender: Any, request: Any, user: Any, authenticator: Any, **kwargs: Any) -> None:
    audit_record(action="user.mfa_removed", actor=user, target=user.email, data={"type": authenticator.type})


@receiver(account_signals.password_reset)
def _reset_link_proves_the_address(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    # A password-reset (or seat-invitation) link only reaches the account's own address, so
    # following it confirms that address; otherwise an invited agent who just set a password
    # would be stopped at login by mandatory email verification.
    from accounts.services import user_email_mark_verified

    user_email_mark_verified(user=user)
