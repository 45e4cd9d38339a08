"""Request body parsers for the REST endpoints (REST_FRAMEWORK's DEFAULT_PARSER_CLASSES)."""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's, with a document nested deeper than Python's parser goes refused like any other
    malformed body (a 400 with the API's error code): the parser raises RecursionError, not the
    ValueError DRF turns into a ParseError, and a few kilobytes of `[` were a 500."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply.") from None
