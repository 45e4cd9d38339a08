"""German translation: pages render in German when asked, the footer switcher sets the language
cookie for every host, and the catalogue is complete (nothing untranslated or fuzzy)."""

from __future__ import annotations

import ast
import gettext
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import translation

from accounts.models import Customer
from customers.session import SESSION_KEY
from tests.conftest import World, business_client, public_client

LOCALE_DIR = Path(settings.BASE_DIR) / "locale" / "de" / "LC_MESSAGES"
PLACEHOLDER = re.compile(r"%\([a-z_]+\)[sd]|%[sd]|%%|\{[a-z_]+\}|<[^>]+>")


@pytest.fixture(autouse=True)
def _back_to_the_default_language() -> Iterator[None]:
    """LocaleMiddleware activates a request's language on the thread and the test client never
    resets it: without this, later tests in the run would see German messages."""
    yield
    translation.deactivate()


# --- pages in German ---------------------------------------------------------------------------


def test_landing_page_in_german(world: World) -> None:
    page = public_client().get("/", HTTP_ACCEPT_LANGUAGE="de")
    assert page.status_code == 200
    html = page.content.decode()
    assert '<html lang="de">' in html
    assert "Gemeinsamer Posteingang" in html
    assert "Kostenlos starten" in html
    assert "Shared inbox" not in html


def test_landing_page_stays_english_by_default(world: World) -> None:
    html = public_client().get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<html lang="en">' in html and "Shared inbox" in html


def test_dashboard_in_german(world: World) -> None:
    page = business_client(world.business_a, world.owner_a).get("/", HTTP_ACCEPT_LANGUAGE="de")
    assert page.status_code == 200
    html = page.content.decode()
    assert f"Willkommen bei {world.business_a.display_name}" in html
    assert "Posteingang" in html and "Abrechnung" in html and "Verifizierung" in html
    assert "Inbox" not in html


def test_me_sign_in_page_in_german(world: World) -> None:
    html = public_client().get("/me/", HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert "Mit Ihrer Telefonnummer anmelden" in html
    assert "Code per SMS senden" in html


def test_me_privacy_page_in_german(world: World) -> None:
    customer = Customer.objects.create(phone_number=f"+49151{uuid.uuid4().int % 10**8:08d}")
    client = public_client()
    session = client.session
    session[SESSION_KEY] = customer.pk
    session.save()
    page = client.get("/me/", HTTP_ACCEPT_LANGUAGE="de")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Ihre Nachrichten und Privatsphäre" in html
    assert "Unternehmen, die Sie kontaktiert haben" in html


# --- the switcher ------------------------------------------------------------------------------


def test_footer_has_a_labelled_language_switcher(world: World) -> None:
    html = public_client().get("/").content.decode()
    assert 'action="/i18n/setlang/"' in html
    assert '<label for="language-select"' in html and 'id="language-select" name="language"' in html
    assert '<option value="de" lang="de">Deutsch</option>' in html
    assert '<button type="submit"' in html


def test_switcher_sets_the_language_cookie_for_all_hosts(world: World) -> None:
    client = public_client()
    response = client.post("/i18n/setlang/", {"language": "de", "next": "/pricing/"})
    assert response.status_code == 302 and response["Location"] == "/pricing/"
    cookie = response.cookies[settings.LANGUAGE_COOKIE_NAME]
    assert cookie.value == "de"
    assert cookie["domain"] == settings.SESSION_COOKIE_DOMAIN == f".{settings.PARLEY_DOMAIN}"
    # The cookie now wins over the browser's English.
    html = client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<html lang="de">' in html and "Kostenlos starten" in html


def test_switcher_works_on_a_business_host(world: World) -> None:
    client = business_client(world.business_a, world.owner_a)
    response = client.post("/i18n/setlang/", {"language": "de", "next": "/"})
    assert response.status_code == 302
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "de"
    assert "Übersicht" in client.get("/").content.decode()


# --- the catalogue -----------------------------------------------------------------------------


@dataclass
class Entry:
    msgctxt: str | None = None
    msgid: str = ""
    msgid_plural: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)


def parse_po(path: Path) -> list[Entry]:
    """Just enough of the PO format for Django's catalogues; obsolete (#~) entries are skipped."""
    entries: list[Entry] = []
    current: Entry | None = None
    key: tuple[str, int] | None = None
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            if current is not None:
                entries.append(current)
            current, key = None, None
            continue
        if current is None:
            current = Entry()
        if line.startswith("#,"):
            current.flags |= {flag.strip() for flag in line[2:].split(",")}
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            assert key is not None, line
            _append(current, key, ast.literal_eval(line))
        else:
            keyword, _, value = line.partition(" ")
            match = re.fullmatch(r"msgstr\[(\d+)\]", keyword)
            key = ("msgstr", int(match.group(1))) if match else (keyword, 0)
            _append(current, key, ast.literal_eval(value), start=True)
    return [entry for entry in entries if entry.msgid or entry.msgstr]


def _append(entry: Entry, key: tuple[str, int], text: str, *, start: bool = False) -> None:
    name, index = key
    if name == "msgstr":
        entry.msgstr[index] = ("" if start else entry.msgstr[index]) + text
    else:
        setattr(entry, name, ("" if start else getattr(entry, name)) + text)


def catalogue() -> list[Entry]:
    return [entry for entry in parse_po(LOCALE_DIR / "django.po") if entry.msgid]


def test_catalogue_is_complete() -> None:
    entries = catalogue()
    assert len(entries) > 500
    assert [e.msgid for e in entries if "fuzzy" in e.flags] == []
    assert [e.msgid for e in entries if not e.msgstr or not all(e.msgstr.values())] == []
    plurals = [e for e in entries if e.msgid_plural is not None]
    assert plurals and all(sorted(e.msgstr) == [0, 1] for e in plurals)


TEMPLATE_MSGID = re.compile(r"""{%\s*translate\s+(?:"([^"]*)"|'([^']*)')\s*(?:as\s+\w+\s*)?%}""")
PYTHON_MSGID = re.compile(r"""\b(?:_|gettext|gettext_lazy|gettext_noop)\(\s*"((?:[^"\\\n]|\\.)*)"\s*\)""")


def test_catalogue_has_every_simple_msgid_in_the_source() -> None:
    """Without gettext on CI: every `{% translate "…" %}` in templates/ and every one-literal
    `_("…")` / `gettext_noop("…")` in the project's Python is in the catalogue (makemessages
    finds more; this catches a string added without its German)."""
    known = {entry.msgid for entry in catalogue() if entry.msgctxt is None}
    base = Path(settings.BASE_DIR)
    missing: set[tuple[str, str]] = set()
    for path in (base / "templates").rglob("*.html"):
        for match in TEMPLATE_MSGID.finditer(path.read_text(encoding="utf-8")):
            msgid = match.group(1) if match.group(1) is not None else match.group(2)
            # The translate tag looks up a literal % doubled, as makemessages writes it.
            if msgid.replace("%", "%%") not in known:
                missing.add((str(path.relative_to(base)), msgid))
    for path in base.rglob("*.py"):
        relative = path.relative_to(base)
        if relative.parts[0] in {".venv", "tests", "bench"} or "migrations" in relative.parts:
            continue
        for match in PYTHON_MSGID.finditer(path.read_text(encoding="utf-8")):
            msgid = ast.literal_eval(f'"{match.group(1)}"')
            if msgid not in known:
                missing.add((str(relative), msgid))
    assert sorted(missing) == []


def test_catalogue_says_conversation_one_way() -> None:
    """A conversation is an „Unterhaltung“ everywhere (the catalogue mixed in „Konversation“)."""
    texts = [text for entry in catalogue() for text in entry.msgstr.values()]
    assert [text for text in texts if "onversation" in text] == []
    assert sum("Unterhaltung" in text for text in texts) > 50


def test_catalogue_keeps_placeholders_and_markup() -> None:
    wrong = []
    for entry in catalogue():
        sources = [entry.msgid] if entry.msgid_plural is None else [entry.msgid, entry.msgid_plural]
        for index, text in entry.msgstr.items():
            source = sources[min(index, len(sources) - 1)]
            if sorted(PLACEHOLDER.findall(source)) != sorted(PLACEHOLDER.findall(text)):
                wrong.append((entry.msgid, text))
    assert wrong == []


def test_header_is_german_and_not_fuzzy() -> None:
    header = parse_po(LOCALE_DIR / "django.po")[0]
    assert header.msgid == "" and "fuzzy" not in header.flags
    assert "Language: de\n" in header.msgstr[0]
    assert "Plural-Forms: nplurals=2; plural=(n != 1);" in header.msgstr[0]


def test_compiled_catalogue_matches_the_po_file() -> None:
    """The .mo is committed (CI has no gettext): it must be compiled from the current .po."""
    with (LOCALE_DIR / "django.mo").open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    stale = []
    for entry in catalogue():
        context = entry.msgctxt
        if entry.msgid_plural is None:
            got = compiled.pgettext(context, entry.msgid) if context else compiled.gettext(entry.msgid)
            if got != entry.msgstr[0]:
                stale.append(entry.msgid)
        else:
            for n, index in ((1, 0), (2, 1)):
                got = (
                    compiled.npgettext(context, entry.msgid, entry.msgid_plural, n)
                    if context
                    else compiled.ngettext(entry.msgid, entry.msgid_plural, n)
                )
                if got != entry.msgstr[index]:
                    stale.append(entry.msgid)
    assert stale == []
