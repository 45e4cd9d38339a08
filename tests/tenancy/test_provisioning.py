import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from accounts.models import Membership
from audit.models import AuditEvent
from tenancy.models import Business, Domain
from tenancy.services import business_create
from tenancy.slugs import validate_slug
from tests.conftest import World


def _catalog(schema: str) -> dict[str, set[tuple[str, ...]]]:
    """Tables, index names and constraint names of one schema, for comparing copies."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema])
        tables = {(row[0],) for row in cursor.fetchall()}
        cursor.execute("SELECT tablename, indexname FROM pg_indexes WHERE schemaname = %s", [schema])
        indexes = {tuple(row) for row in cursor.fetchall()}
        cursor.execute(
            """SELECT cl.relname, con.conname, con.contype FROM pg_constraint con
               JOIN pg_class cl ON cl.oid = con.conrelid JOIN pg_namespace n ON n.oid = cl.relnamespace
               WHERE n.nspname = %s AND con.contype IN ('p','u','f','c')""",
            [schema],
        )
        constraints = {tuple(row) for row in cursor.fetchall()}
        cursor.execute(
            """SELECT table_name, column_name, data_type, is_nullable, is_identity FROM information_schema.columns
               WHERE table_schema = %s""",
            [schema],
        )
        columns = {tuple(row) for row in cursor.fetchall()}
    return {"tables": tables, "indexes": indexes, "constraints": constraints, "columns": columns}


def test_business_create_provisions_schema_domain_and_owner_seat(world: World) -> None:
    business = business_create(owner=world.owner_a, name="Gamma Bikes", slug="gamma-bikes")

    assert business.schema_name == "b_gamma_bikes"
    assert Domain.objects.get(tenant=business).domain == "gamma-bikes.parley.localhost"
    seat = Membership.objects.get(business=business, user=world.owner_a)
    assert seat.role == Membership.Role.OWNER
    assert AuditEvent.objects.filter(action="business.created", business=business, actor=world.owner_a).exists()


def test_cloned_schema_matches_the_template_exactly(world: World) -> None:
    business = business_create(owner=world.owner_a, name="Delta", slug="delta-shop")
    template, clone = _catalog("tenant_template"), _catalog(business.schema_name)

    assert template["tables"], "the template schema has tables"
    for kind in ("tables", "indexes", "constraints", "columns"):
        assert clone[kind] == template[kind], kind


def test_cloned_schema_has_the_migration_history(world: World) -> None:
    business = business_create(owner=world.owner_a, name="Epsilon", slug="epsilon")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tenant_template.django_migrations")
        expected = cursor.fetchone()[0]
        cursor.execute(f'SELECT count(*) FROM "{business.schema_name}".django_migrations')
        assert cursor.fetchone()[0] == expected > 0


def test_identity_sequences_continue_after_copied_rows(world: World) -> None:
    business = business_create(owner=world.owner_a, name="Zeta", slug="zeta")
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT max(id) FROM "{business.schema_name}".django_content_type')
        highest = cursor.fetchone()[0]
        cursor.execute(
            f'INSERT INTO "{business.schema_name}".django_content_type (app_label, model) VALUES (%s, %s) RETURNING id',
            ["probe", "probe"],
        )
        assert cursor.fetchone()[0] > highest


def test_duplicate_slug_is_refused_with_a_message(world: World) -> None:
    with pytest.raises(ValidationError) as error:
        business_create(owner=world.owner_b, name="Another Alpha", slug="alpha")
    assert "already taken" in str(error.value)
    assert Business.objects.filter(slug="alpha").count() == 1


def test_failed_provisioning_leaves_nothing_behind(world: World) -> None:
    with pytest.raises(ValidationError):
        business_create(owner=world.owner_a, name="   ", slug="no-name")
    assert not Business.objects.filter(slug="no-name").exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'b_no_name'")
        assert cursor.fetchone() is None


@pytest.mark.parametrize(
    ("slug", "message"),
    [
        ("ab", "at least 3"),
        ("a" * 33, "at most 32"),
        ("Acme", "lowercase"),
        ("acme_shop", "lowercase"),
        ("-acme", "lowercase"),
        ("acme-", "lowercase"),
        ("ac--me", "two hyphens"),
        ("www", "reserved"),
        ("admin", "reserved"),
        ("api", "reserved"),
        ("über", "lowercase"),
    ],
)
def test_slug_validation_messages(slug: str, message: str) -> None:
    with pytest.raises(ValidationError) as error:
        validate_slug(slug)
    assert message in " ".join(error.value.messages)


@pytest.mark.parametrize("slug", ["abc", "aurora-air", "baeckerei-kraus", "a1b2", "x" * 32])
def test_valid_slugs(slug: str) -> None:
    validate_slug(slug)
