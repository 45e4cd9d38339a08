"""The privacy pages' request rows (customers.privacy.request_rows): one helper for the customer's
and the business's page, a download link only while the export file exists, and the export folder
read once per page, not once per row."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from customers import privacy
from customers.models import PrivacyRequest
from tests.conftest import World, business_client
from tests.customers.conftest import customer_client, make_customer


def _export(customer: Any, *, business: Any = None, file_name: str = "", done: bool = True) -> PrivacyRequest:
    return PrivacyRequest.objects.create(
        kind=PrivacyRequest.Kind.EXPORT,
        requested_by=PrivacyRequest.Requester.BUSINESS if business else PrivacyRequest.Requester.CUSTOMER,
        customer=customer,
        business=business,
        status=PrivacyRequest.Status.DONE if done else PrivacyRequest.Status.PENDING,
        file_name=file_name,
        finished_at=timezone.now() if done else None,
    )


def test_rows_link_only_files_that_exist_and_read_the_folder_once(
    world: World, export_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = make_customer("Rows")
    export_root.mkdir(parents=True)
    present = [_export(customer, file_name=f"present-{n}.zip") for n in range(3)]
    for request in present:
        (export_root / request.file_name).write_bytes(b"zip")
    gone = _export(customer, file_name="gone.zip")  # pruned after two days
    running = _export(customer, done=False)

    scans: list[Any] = []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: scans.append(path) or real_scandir(path))
    monkeypatch.setattr(Path, "exists", lambda self: pytest.fail(f"looked up {self} for one row"))
    rows = privacy.request_rows([*present, gone, running], owner=customer)

    assert len(scans) == 1
    assert [row.req for row in rows] == [*present, gone, running]
    owner = privacy.download_owner(customer)
    assert all(privacy.download_token_check(row.download_token, owner=owner) == str(row.req.pk) for row in rows[:3])
    assert rows[3].download_token == "" and rows[4].download_token == ""
    # Nothing finished: the folder is not read at all.
    scans.clear()
    assert privacy.request_rows([running], owner=customer)[0].download_token == ""
    assert scans == []


def test_a_missing_export_folder_means_no_links(world: World, export_root: Path) -> None:
    customer = make_customer()
    assert not export_root.exists()
    assert privacy.request_rows([_export(customer, file_name="x.zip")], owner=customer)[0].download_token == ""


def test_each_page_makes_links_for_its_own_owner(world: World, export_root: Path) -> None:
    customer = make_customer()
    export_root.mkdir(parents=True)
    mine = _export(customer, file_name="mine.zip")
    theirs = _export(customer, business=world.business_a, file_name="theirs.zip")
    for request in (mine, theirs):
        (export_root / request.file_name).write_bytes(b"zip")

    customer_page = customer_client(customer).get("/me/privacy/").content.decode()
    business_page = business_client(world.business_a, world.owner_a).get("/privacy/").content.decode()
    (customer_token,) = re.findall(r'href="/me/privacy/download/([^"/]+)/"', customer_page)
    (business_token,) = re.findall(r'href="/privacy/download/([^"/]+)/"', business_page)
    assert privacy.download_token_check(customer_token, owner=privacy.download_owner(customer)) == str(mine.pk)
    assert privacy.download_token_check(business_token, owner=privacy.download_owner(world.business_a)) == str(
        theirs.pk
    )
    # A business's link is no good to the customer, nor the other way round, nor to business B.
    assert privacy.download_token_check(business_token, owner=privacy.download_owner(customer)) is None
    assert privacy.download_token_check(customer_token, owner=privacy.download_owner(world.business_a)) is None
    assert privacy.download_token_check(business_token, owner=privacy.download_owner(world.business_b)) is None
    refused = business_client(world.business_b, world.owner_b).get(f"/privacy/download/{business_token}/")
    assert refused.status_code == 302 and refused["Location"] == "/privacy/"
