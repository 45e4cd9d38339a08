from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """One identity for business owners, agents and platform staff. Logs in with an email."""

    email = models.EmailField(_("email address"), unique=True)
    # The name customers see as the author of this person's replies (asked at sign-up and on
    # the team invite, editable on the profile page).
    full_name = models.CharField(
        _("display name"), max_length=150, blank=True, help_text=_("Customers see this name on your replies.")
    )
    is_staff = models.BooleanField(_("platform staff"), default=False, help_text=_("Can log in to the platform admin."))
    is_active = models.BooleanField(_("active"), default=True)  # type: ignore[assignment,misc]
    date_joined = models.DateTimeField(_("joined"), default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = []

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return self.full_name or self.email

    def get_short_name(self) -> str:
        """The name on messages, typing and presence: the display name as the person chose it.
        Accounts from before display names were asked for fall back to the email's local part."""
        return self.full_name or self.email.split("@")[0]


class Membership(models.Model):
    """A user's seat in a business. Roles grow in power: agent < admin < owner."""

    class Role(models.TextChoices):
        OWNER = "owner", _("Owner")
        ADMIN = "admin", _("Admin")
        AGENT = "agent", _("Agent")

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    business = models.ForeignKey("tenancy.Business", on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(_("role"), max_length=16, choices=Role.choices, default=Role.AGENT)
    # Who gave this seat (named in the mail and on the join page); empty for a business's
    # founder and for seats from before it was recorded.
    added_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("added by")
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.UniqueConstraint(fields=["user", "business"], name="membership_unique_user_business"),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.business} ({self.get_role_display()})"

    @property
    def can_manage(self) -> bool:
        """Owners and admins run the business's settings; agents work the inbox."""
        return self.role in {self.Role.OWNER, self.Role.ADMIN}

    @property
    def is_owner(self) -> bool:
        return self.role == self.Role.OWNER


class Customer(models.Model):
    """A person identified by a verified phone number. Global: one person, many businesses."""

    phone_number = models.CharField(_("phone number"), max_length=20, unique=True, help_text=_("E.164"))
    # `phone_number` as people read it, stored when the customer signs in: every message event
    # names the customer's number, and formatting it with phonenumbers (~0.1 ms) was a tenth of a
    # notifications job's time. Blank for customers made elsewhere (demos, tests): computed then.
    phone_formatted = models.CharField(_("phone number as read"), max_length=32, blank=True, editable=False)
    display_name = models.CharField(_("name"), max_length=100, blank=True)
    country_code = models.CharField(_("country"), max_length=2, blank=True)
    verified_at = models.DateTimeField(_("verified"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        ordering = ["phone_number"]

    def __str__(self) -> str:
        return self.display_name or self.phone_display

    @property
    def phone_display(self) -> str:
        """The number for people to read; `phone_number` stays E.164 for storage and search."""
        if self.phone_formatted:
            return self.phone_formatted
        from verification.phone import phone_display

        return phone_display(self.phone_number)


class MailboxMessage(models.Model):
    """A mail the development backend (accounts.mailbox.MailboxBackend) "sent": read at /dev/mailbox/."""

    to = models.TextField(_("to"))
    subject = models.CharField(_("subject"), max_length=300)
    body = models.TextField(_("text"))
    html_body = models.TextField(_("HTML"), blank=True)
    sent_at = models.DateTimeField(_("sent"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("development mail")
        verbose_name_plural = _("development mailbox")
        ordering = ["-sent_at", "-id"]

    def __str__(self) -> str:
        return f"{self.to}: {self.subject}"
