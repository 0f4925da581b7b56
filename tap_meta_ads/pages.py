"""A Graph API page parsed once: its rows, its cursor, Meta's clock; and the cursor paginator.

One msgspec decode of a page's shell on the fetcher thread, straight from the body's bytes: its cursor and its
rows checked as JSON but left raw until the writer builds them (``GraphPage``; report rows with their metrics
as numbers, ``metric_values.MetricRows``). Pages follow ``paging.cursors.after``, never ``next`` (which repeats
the token when a client sent it as a parameter).
"""

from __future__ import annotations

import datetime
import email.utils
import functools
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import requests
from singer_sdk.pagination import BaseAPIPaginator
from typing_extensions import override

from tap_meta_ads.errors import (
    GraphAPIError,
    TransientError,
    parse_json_body,
)


class _Cursors(msgspec.Struct):
    after: str | None = None


class Paging(msgspec.Struct):
    """A Graph API page's ``paging`` member: the cursor of the next page, and whether there is one."""

    cursors: _Cursors | None = None
    next: str | None = None


class PageShell(msgspec.Struct):
    """A page as a fetcher thread reads it: ``paging`` decoded, the rows checked as JSON but not built."""

    data: msgspec.Raw
    paging: Paging | None = None


#: One typed msgspec decode per page, straight from the body's bytes: about five times faster than
#: ``json.loads`` of the text, and it checks the page's shape on the way.
_SHELL_DECODER = msgspec.json.Decoder(PageShell)
_ROWS_DECODER = msgspec.json.Decoder(list[dict[str, Any]])


def decode_shell(content: bytes) -> PageShell:
    """A page's ``paging`` and its rows as raw JSON; raises ``msgspec.DecodeError`` for anything but a page."""
    return _SHELL_DECODER.decode(content)


def decode_rows(data: msgspec.Raw | bytes) -> list[dict[str, Any]]:
    """A page's rows as Meta sent them; raises ``msgspec.DecodeError`` when they are not a list of objects.

    A page is thousands of fresh dicts and lists that live until they are written; ``cli.run`` sets the
    cyclic GC's threshold so that it does not walk them meanwhile.
    """
    return _ROWS_DECODER.decode(data)


def build_rows(raw: msgspec.Raw) -> list[dict[str, Any]]:
    """The rows of a page read by :meth:`GraphPage.from_response`, built now (by the writer)."""
    try:
        return decode_rows(raw)
    except msgspec.DecodeError as exc:
        msg = f"Meta sent a page whose data is not a list of objects ({exc})"
        raise GraphAPIError(msg) from None


@dataclass
class GraphPage:
    """One page of an edge, parsed once: its rows, the next cursor and Meta's clock.

    Pages of an edge arrive with their rows still raw JSON (checked, not built; see ``from_response``):
    the fetcher thread, whose time is on the chain of cursors, only decodes the cursor, and the writer
    builds the rows when it writes them. Queued pages also stay a compact block of bytes, not thousands
    of dicts.
    """

    rows: list[dict[str, Any]] | msgspec.Raw
    after: str | None
    has_next: bool
    server_time: int
    fetched_at: datetime.datetime | None = None
    #: The size of the response body the page holds (raw rows keep a view of it): what it costs in the queue.
    body_bytes: int = 0
    #: Objects of the page Meta could not serve, read around (see ``GraphStream.read_page``): (id, Meta's reason).
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def records(self) -> list[dict[str, Any]]:
        """The page's rows, built on first use."""
        rows = self.rows
        if isinstance(rows, msgspec.Raw):
            rows = self.rows = build_rows(rows)
        return rows

    @classmethod
    def from_node(cls, response: requests.Response) -> GraphPage:
        """Parse a 2xx body that is one object (``GET /act_{id}``) as a page of one row and no next."""
        body = parse_json_body(response.text)
        if not isinstance(body, dict) or "id" not in body:
            raise TransientError(
                "invalid_body",
                f"HTTP {response.status_code} with a body that is not a Graph API object "
                f"({len(response.content)} bytes)",
            )
        return cls(rows=[body], after=None, has_next=False, server_time=server_time_of(response))

    @classmethod
    def from_response(cls, response: requests.Response) -> GraphPage:
        """Parse a 2xx body; a body that is not a Graph page is a transient fault.

        The rows are left raw (checked as JSON: a truncated or malformed body is caught here, where it is
        retried) and built when first used (``records``), by the writer.
        """
        content = response.content
        try:
            shell = decode_shell(content)
        except msgspec.DecodeError as exc:  # not JSON, truncated, or not shaped like a page
            raise TransientError(
                "invalid_body",
                f"HTTP {response.status_code} with a body that is not a Graph API page ({len(content)} bytes)",
            ) from exc
        paging = shell.paging
        after = paging.cursors.after if paging and paging.cursors else None
        return cls(
            rows=shell.data,
            after=after or None,
            has_next=bool(paging and paging.next),
            server_time=server_time_of(response),
            fetched_at=datetime.datetime.now(datetime.timezone.utc),
            body_bytes=len(content),
        )


def queued_bytes(page: GraphPage | None) -> int:
    """What a page costs while it waits for the writer (``None``, a restarted pass, costs nothing)."""
    return page.body_bytes if page is not None else 0


def server_time_of(response: requests.Response) -> int:
    """Meta's clock from the ``Date`` header (epoch seconds); the local clock when absent."""
    header = response.headers.get("Date")
    epoch = _http_date_epoch(header) if header else None
    return int(time.time()) if epoch is None else epoch


@functools.lru_cache(maxsize=16)
def _http_date_epoch(header: str) -> int | None:
    """An HTTP date in epoch seconds, parsed once per distinct value.

    The header changes once a second while pages arrive many times a second, and the standard
    library's parser took about a sixth of the fetcher thread's CPU on small pages.
    """
    try:
        return int(email.utils.parsedate_to_datetime(header).timestamp())
    except (TypeError, ValueError):
        return None


class CursorPaginator(BaseAPIPaginator[str | None]):
    """Follows ``paging.cursors.after`` while ``paging.next`` exists.

    Stops without an extra request when ``next`` is absent (``after`` may still be present on
    the last page), keeps going over an empty page that has ``next``, and raises on any cursor
    seen before in the partition: a loop would otherwise re-read the same rows forever.
    """

    def __init__(self, start_value: str | None = None) -> None:
        super().__init__(start_value)
        self._seen: set[str] = {start_value} if start_value else set()

    @override
    def has_more(self, response: GraphPage) -> bool:  # type: ignore[override]  # pages are parsed once, upstream
        return response.has_next and response.after is not None

    @override
    def get_next(self, response: GraphPage) -> str | None:  # type: ignore[override]  # as above
        cursor = response.after
        if cursor in self._seen:
            msg = f"Meta returned a paging cursor already seen in this partition (page {self.count})"
            raise GraphAPIError(msg)
        if cursor:
            self._seen.add(cursor)
        return cursor

    @override
    def continue_if_empty(self, response: GraphPage) -> bool:  # type: ignore[override]  # as above
        return self.has_more(response)
