"""Dashboard forms share one layout (static/parley/parley.css): a <div class="form-row"> groups
fields only and is top-aligned (a help text does not lift its input), the button follows the
row; a row is spaced like a field; a fieldset of radios is a field, not the browser's grey box."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

from tests.conftest import World, business_client, public_client

CSS = Path(settings.BASE_DIR) / "static" / "parley"


def rule(css: str, selector: str) -> str:
    match = re.search(rf"(?m)^{re.escape(selector)} {{([^}}]*)}}", css)
    assert match, selector
    return match.group(1)


def test_shared_css_spaces_rows_like_fields_and_unboxes_fieldsets() -> None:
    css = (CSS / "parley.css").read_text()
    field_gap = re.search(r"margin-bottom: ([.\d]+rem)", rule(css, ".field")).group(1)  # type: ignore[union-attr]
    assert f"margin-bottom: {field_gap}" in rule(css, ".form-row")
    assert "align-items: start" in rule(css, "div.form-row")
    fieldset = rule(css, "fieldset.field")
    assert "border: 0" in fieldset and "padding: 0" in fieldset
    # Not only on the pages that load verification.css (the inbox settings do not).
    assert "fieldset.field {" not in (CSS / "verification.css").read_text()


def test_team_seat_fields_share_one_row_and_the_button_follows(world: World) -> None:
    html = business_client(world.business_a, world.owner_a).get("/team/").content.decode()
    form = html[html.index("Add a seat") :]
    row = re.search(r'<div class="form-row">(.*?)\n    </div>\s*<button type="submit" class="button">', form, re.S)
    assert row, "the seat fields are not one row of fields followed by the button"
    for name in ("email", "full_name", "role"):
        assert f'name="{name}"' in row.group(1)


def test_inbox_settings_heading_once_no_grey_box_save_spaced(world: World) -> None:
    html = business_client(world.business_a, world.owner_a).get("/inbox/settings/").content.decode()
    assert html.count(">Auto-assignment<") == 1
    assert "<legend>How new conversations are assigned</legend>" in html
    assert '<fieldset class="field' in html and '<link rel="stylesheet" href="/static/parley/parley.css' in html
    assert '<p class="actions"><button type="submit" class="button">Save</button></p>' in html


def test_directory_search_is_a_spaced_form_row(world: World) -> None:
    html = public_client().get("/businesses/").content.decode()
    assert re.search(
        r'<form method="get" class="form-row" role="search">.*?</form>\s*<section class="card"', html, re.S
    )


def test_verification_website_follows_a_spaced_row(world: World) -> None:
    html = business_client(world.business_a, world.owner_a).get("/verification/").content.decode()
    row_end = html.index('name="email"')
    assert html.rfind('<div class="form-row">', 0, row_end) > html.rfind('name="description"')
    assert html.index('name="website"') > row_end
