"""Business schemas reference public rows (users, customers) without database constraints: each
such constraint added a pair of referential triggers to the public table per business, which
every new connection loaded and every UPDATE of a user ran (issue 9, 1,000 businesses). What the
constraints guaranteed is kept by the app; these tests hold both halves."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.apps import apps
from django.conf import settings
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from django_tenants.utils import schema_context

from accounts.admin import CustomerAdmin, UserAdmin
from accounts.models import Customer, User
from customers.models import BusinessContact
from directory.models import CustomerThread
from messaging import services
from messaging.errors import MessagingError
from messaging.models import Contact, Conversation
from tenancy.services import business_create
from tests.conftest import World, fresh_mobile, public_client
from tests.conftest import test_database_url as database_url

PUBLIC_TABLES = ("accounts_user", "accounts_customer")


def _constraints_into_other_schemas(schema: str) -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT con.conname, ref.relname FROM pg_constraint con
               JOIN pg_class cl ON cl.oid = con.conrelid
               JOIN pg_class ref ON ref.oid = con.confrelid
               WHERE con.contype = 'f' AND cl.relnamespace = %s::regnamespace
                 AND ref.relnamespace <> cl.relnamespace""",
            [schema],
        )
        return list(cursor.fetchall())


def _public_triggers() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT c.relname, count(t.oid) FROM pg_class c LEFT JOIN pg_trigger t ON t.tgrelid = c.oid
               WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY(%s) GROUP BY c.relname""",
            [list(PUBLIC_TABLES)],
        )
        return dict(cursor.fetchall())


def test_the_template_and_business_schemas_have_no_constraint_into_public(world: World) -> None:
    # The template is built by the migrations (messaging 0005 and its siblings drop them);
    # businesses are copies of it.
    assert _constraints_into_other_schemas("tenant_template") == []
    assert _constraints_into_other_schemas(world.business_a.schema_name) == []


def test_a_new_business_adds_no_trigger_to_public_tables(world: World) -> None:
    before = _public_triggers()
    business_create(owner=world.owner_a, name="Trigger Free", slug="trigger-free")
    assert _public_triggers() == before


def test_every_tenant_model_reference_to_a_shared_model_is_unconstrained() -> None:
    # A new field into public must opt out too, or the triggers come back with it.
    shared = set(settings.SHARED_APPS) - set(settings.TENANT_APPS)
    checked = []
    for app_label in settings.TENANT_APPS:
        config = apps.get_app_config(app_label.rsplit(".", 1)[-1])
        if config.name in shared:
            continue
        for model in config.get_models():
            for field in model._meta.concrete_fields:
                target = getattr(field, "related_model", None)
                if target is None or target._meta.app_config.name not in shared:
                    continue
                checked.append(f"{model._meta.label}.{field.name}")
                assert field.db_constraint is False, f"{model._meta.label}.{field.name} constrains into public"
    assert "messaging.Message.author_user" in checked
    assert "messaging.Contact.customer" in checked


def test_users_and_customers_cannot_be_deleted_in_the_admin(world: World) -> None:
    # Nothing in the database stops a delete any more: users are deactivated, customers leave
    # through the privacy centre's account deletion (tests/customers).
    assert UserAdmin(User, None).has_delete_permission(None, world.agent_a) is False  # type: ignore[arg-type]
    assert CustomerAdmin(Customer, None).has_delete_permission(None) is False  # type: ignore[arg-type]
    client = public_client(world.staff)
    assert client.get(f"/admin/accounts/user/{world.agent_a.pk}/delete/").status_code == 403


def test_a_send_for_a_deleted_customer_makes_no_contact(world: World) -> None:
    """What the contact's foreign key guaranteed: no contact for a customer row that is gone
    (messaging.sending makes contacts only for customer rows it locks; the account deletion
    locks the row before its last sweep, customers.privacy)."""
    customer = Customer.objects.create(
        phone_number=fresh_mobile(), display_name="Gone", country_code="DE", verified_at=timezone.now()
    )
    Customer.objects.filter(pk=customer.pk)._raw_delete(using="default")
    with schema_context(world.business_a.schema_name):
        with pytest.raises(MessagingError):
            services.message_send_customer(business=world.business_a, customer=customer, body="hello?")
        assert not Contact.objects.filter(customer_id=customer.pk).exists()
        assert not Conversation.objects.filter(contact__customer_id=customer.pk).exists()
    assert not BusinessContact.objects.filter(customer_id=customer.pk).exists()


def test_the_account_deletion_waits_for_a_send_that_is_making_a_contact(live_db: World) -> None:
    """A send holding its customer row (FOR KEY SHARE, as the dropped foreign key did) keeps the
    account deletion's lock waiting until it commits; the deletion then sweeps what it wrote."""
    customer = Customer.objects.create(
        phone_number=fresh_mobile(), display_name="Racing", country_code="DE", verified_at=timezone.now()
    )
    try:
        with transaction.atomic(), schema_context(world_schema(live_db)):
            services.message_send_customer(business=live_db.business_a, customer=customer, body="first")
            # The deletion's lock from another connection cannot be taken while this send is open.
            with psycopg.connect(database_url(), autocommit=True) as other:
                other.execute("SET lock_timeout = '200ms'")
                with pytest.raises(psycopg.errors.LockNotAvailable):
                    other.execute("SELECT id FROM public.accounts_customer WHERE id = %s FOR UPDATE", [customer.pk])
    finally:
        with schema_context(world_schema(live_db)):
            Conversation.objects.filter(contact__customer_id=customer.pk).delete()
            Contact.objects.filter(customer_id=customer.pk).delete()
        BusinessContact.objects.filter(customer_id=customer.pk).delete()
        CustomerThread.objects.filter(customer_id=customer.pk).delete()
        Customer.objects.filter(pk=customer.pk)._raw_delete(using="default")


def world_schema(world: World) -> str:
    return world.business_a.schema_name


def test_the_migration_drops_and_its_reverse_restores_the_constraints(world: World) -> None:
    business = business_create(owner=world.owner_a, name="Reversible", slug="reversible")
    schema = business.schema_name
    executor_connection: Any = connection
    executor_connection.set_schema(schema)
    try:
        MigrationExecutor(connection).migrate(
            [("messaging", "0004_merge_0003_conversation_lifecycle_0003_rich_messages")]
        )
        restored = {name for name, _table in _constraints_into_other_schemas(schema)}
        assert {
            "messaging_message_author_user_id_fk_accounts_user",
            "messaging_contact_customer_id_fk_accounts_customer",
        } <= restored
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    finally:
        executor_connection.set_schema_to_public()
    assert _constraints_into_other_schemas(schema) == []
