"""The base Graph API stream: one home for URL, auth, fields, paging, errors, retries and checkpoints.

A concrete stream only declares its name, edge, keys and schema (see ``streams.py``); every
behaviour a production extraction needs lives here, once:

- the token travels in the ``Authorization`` header only; ``appsecret_proof`` is a parameter;
- ``fields=`` is derived from the catalog's selected properties (the schema is the one list);
- pages follow ``paging.cursors.after`` (never the ``next`` URL, which repeats the token when
  a client sent it as a parameter);
- every response goes through the error table (``errors.py``) and the usage headers
  (``usage.py``), and retries run through the SDK's backoff integration with waits that honour
  Meta's hints;
- every ``checkpoint_every_pages`` pages the partition's cursor is saved in STATE
  (``checkpoint.py``), so a killed run resumes mid-partition instead of from zero.
"""

from __future__ import annotations

import datetime
import email.utils
import functools
import hashlib
import hmac
import json
import random
import re
import time
import urllib.parse
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

import backoff
import msgspec
import requests
from singer_sdk import metrics
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.types import Context
from singer_sdk.pagination import BaseAPIPaginator
from singer_sdk.singerlib.catalog import Metadata, MetadataMapping
from singer_sdk.streams import RESTStream
from typing_extensions import override

from tap_meta_ads import checkpoint
from tap_meta_ads.chains import RunChains, chains_of_run
from tap_meta_ads.checkpoint import CheckpointedBookmarks, ResumePoint, SentIds
from tap_meta_ads.errors import (
    AccountSkippedError,
    Action,
    CursorRejectedError,
    GraphAPIError,
    GraphError,
    PageTooLargeError,
    ThrottledError,
    TransientError,
    UnservableObjectError,
    account_scope_reason,
    classify,
    connect_failure,
    parse_json_body,
    raise_for_error,
    retry_after_seconds,
)
from tap_meta_ads.records import PrunedRecordMessages
from tap_meta_ads.session import session_of_run
from tap_meta_ads.usage import Pacer, Usage

if TYPE_CHECKING:
    from backoff.types import Details
    from singer_sdk.helpers.types import Record

    from tap_meta_ads.monitor import PartitionStats, RunMonitor

#: What a retry is worth trying for: Meta's retriable errors (see errors.py) and transport faults.
RETRIABLE_EXCEPTIONS = (
    ConnectionResetError,
    RetriableAPIError,
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
#: The smallest page the tap shrinks to when Meta asks for less data per call.
MIN_PAGE_SIZE = 5
#: Successful pages in a row after which a shrunk page size doubles again.
GROW_AFTER_PAGES = 10
#: How often a partition may restart from its bookmark because Meta refused its cursor.
MAX_CURSOR_RESTARTS = 5
HTTP_OK_MAX = 299
#: Attempts, and the longest wait between them, while the run has never reached the API and no
#: connection can be opened at all (a typo in ``api_url``, a wrong port): a few quick tries, then
#: one line naming the host, instead of half an hour of backoff. Once a page has been read, a
#: connection fault is an outage of a server that exists, and gets the full ``max_retries``.
FIRST_CONTACT_TRIES = 3
FIRST_CONTACT_MAX_WAIT_SECONDS = 10.0
#: The part of ``request_timeout_seconds`` allowed for opening the TCP connection: a host that drops
#: connection attempts (a firewall, a wrong address) is found out in seconds, not after the whole timeout.
CONNECT_TIMEOUT_SECONDS = 10.0


def appsecret_proof(token: str, app_secret: str | None) -> str | None:
    """Meta's ``appsecret_proof``: hex HMAC-SHA256 of the token keyed with the app secret."""
    if not app_secret:
        return None
    return hmac.new(app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()


@dataclass
class AccountFetch:
    """What one account's fetcher owns while several accounts are read at once.

    Where it starts, its page size, its pacer (each ad account has its own budget) and its counters.
    The main thread plans it (``start``: the saved resume point or a fresh pass); from then on only the
    account's fetcher thread changes it, except ``stats`` fields the writer counts (pages, records).
    """

    context: dict[str, Any]
    start: ResumePoint
    fresh_since: int | None
    page_size_limit: int
    pacer: Pacer
    page_size: int = 0
    good_pages: int = 0
    pace_wait: float = 0.0
    started: bool = False
    #: The ``until`` of an edge read through ``since``/``until`` (``window_params``): the pass's upper bound.
    until: int | None = None
    #: Optional fields Meta refused to this account (see ``GraphStream.optional_fields``): no longer asked.
    dropped_fields: set[str] = field(default_factory=set)
    stats: PartitionStats = field(init=False)

    def __post_init__(self) -> None:
        self.page_size = self.page_size or self.page_size_limit


class BearerAuth(requests.auth.AuthBase):
    """Puts the token in the ``Authorization`` header and nowhere else; its repr hides it."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Add the header to an outgoing request."""
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(<redacted>)"


class _Cursors(msgspec.Struct):
    after: str | None = None


class Paging(msgspec.Struct):
    """A Graph API page's ``paging`` member: the cursor of the next page, and whether there is one."""

    cursors: _Cursors | None = None
    next: str | None = None


class _PageBody(msgspec.Struct):
    """The members of a Graph API page the tap reads; anything else in the body is skipped unread."""

    data: list[dict[str, Any]]
    paging: Paging | None = None


class _PageShell(msgspec.Struct):
    """A page as a fetcher thread reads it: ``paging`` decoded, the rows checked as JSON but not built."""

    data: msgspec.Raw
    paging: Paging | None = None


#: One typed msgspec decode per page, straight from the body's bytes: about five times faster than
#: ``json.loads`` of the text, and it checks the page's shape on the way.
_PAGE_DECODER = msgspec.json.Decoder(_PageBody)
_SHELL_DECODER = msgspec.json.Decoder(_PageShell)
_ROWS_DECODER = msgspec.json.Decoder(list[dict[str, Any]])

#: Turns a page's body into its rows and ``paging``; raises ``msgspec.DecodeError`` for anything else.
PageDecoder = Callable[[bytes], tuple[list[dict[str, Any]], Paging | None]]


def decode_page(content: bytes) -> tuple[list[dict[str, Any]], Paging | None]:
    """A page's rows (as Meta sent them) and its ``paging`` member.

    A page is thousands of fresh dicts and lists that live until they are written; ``cli.run`` sets the
    cyclic GC's threshold so that it does not walk them meanwhile.
    """
    body = _PAGE_DECODER.decode(content)
    return body.data, body.paging


def build_rows(raw: msgspec.Raw) -> list[dict[str, Any]]:
    """The rows of a page read by :meth:`GraphPage.from_response`, built now (by the writer)."""
    try:
        return _ROWS_DECODER.decode(raw)
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
    def from_response(cls, response: requests.Response, decode: PageDecoder | None = None) -> GraphPage:
        """Parse a 2xx body; a body that is not a Graph page is a transient fault.

        Without ``decode`` the rows are left raw (checked as JSON: a truncated or malformed body is
        caught here, where it is retried); ``decode`` builds them at once (report rows, see insights).
        """
        content = response.content
        rows: list[dict[str, Any]] | msgspec.Raw
        try:
            if decode is None:
                shell = _SHELL_DECODER.decode(content)
                rows, paging = shell.data, shell.paging
            else:
                rows, paging = decode(content)
        except msgspec.DecodeError as exc:  # not JSON, truncated, or not shaped like a page
            raise TransientError(
                "invalid_body",
                f"HTTP {response.status_code} with a body that is not a Graph API page ({len(content)} bytes)",
            ) from exc
        after = paging.cursors.after if paging and paging.cursors else None
        return cls(
            rows=rows,
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


#: Statuses Meta hides (or a backup would not want) unless asked for: they are extracted only when the
#: ``effective_statuses`` setting names them, whether the edge filters them (``status_param``) or the tap does
#: (``status_field``).
HIDDEN_STATUSES = frozenset({"ARCHIVED", "DELETED"})


class GraphStream(CheckpointedBookmarks, PrunedRecordMessages, RESTStream[str | None]):
    """Base stream for an ad-account edge, ``GET /{version}/act_{account_id}/{edge}``.

    Subclasses set ``name``, ``edge``, ``primary_keys``, ``replication_key`` and ``schema``, plus
    what makes their edge differ from ``ads`` (the defaults are the ``ads`` edge's):

    - ``replication_key = None``: full table (each run reads the whole edge; resume points still work);
    - ``status_param = None``: the edge takes no ``effective_status``; ``status_field`` then names the
      record's status, and records whose status is ARCHIVED or DELETED are dropped unless the
      ``effective_statuses`` setting names it (Meta lists deleted images, for example);
    - ``server_filtering = False``: the edge takes no ``filtering``, so an incremental read sees every
      page and keeps the records updated after the bookmark itself (same bookmark and cap);
    - ``tap_fields``: properties the tap fills in, never asked of Meta (``account_id`` on a node type
      without one);
    - ``single_object = True``: ``GET /act_{id}`` itself, one object per account, no paging;
    - ``window_params = True``: the edge takes ``since``/``until`` (Unix seconds) instead of ``filtering``
      (the change log): a pass sends ``since`` = the bookmark and ``until`` = the pass's cap on Meta's clock,
      and drops what is not after the bookmark itself (Meta does not say whether ``since`` is inclusive);
    - ``identity_key``/``identity_fields``: objects without an id (the change log) get ``identity_key``, a
      hex SHA-256 of ``account_id`` and those fields as Meta sent them: a key that is the same every time
      the same object is read, whatever else is selected (the fields are always asked);
    - ``optional_fields``: fields Meta serves to some tokens or accounts only; when Meta refuses a page
      that asks for one (a permission error, or "reduce the amount of data" at the smallest page), the
      account's pages are asked again without them, with one log line, instead of failing the run.

    Whatever the edge, an object Meta cannot serve inside a page (``UNSERVABLE_OBJECT_SUBCODES``, such as
    "Ad Creative Is Incomplete") does not fail the stream: the page is read around it (``read_page``).
    """

    edge: str = ""
    #: What names a partition: one per ad account (``inputs.py`` checks a state's partitions against it
    #: without discovering the accounts).
    partition_keys: tuple[str, ...] = ("account_id",)
    is_sorted = False  # Meta's edges are not ordered by updated_time
    status_param: str | None = "effective_status"
    status_field: str | None = None
    server_filtering: bool = True
    tap_fields: frozenset[str] = frozenset()
    single_object: bool = False
    window_params: bool = False
    identity_key: str | None = None
    identity_fields: tuple[str, ...] = ()
    optional_fields: frozenset[str] = frozenset()
    #: Meta's values already have the schema's JSON types (ints for ints, strings for times, which
    #: post_process writes as RFC 3339), so the SDK's per-record type conformance is pure cost:
    #: about a third of the tap's CPU in a profile of 20,000 ads.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
    #: Where every partition's counters go; the tap gives all its streams one shared monitor.
    monitor: RunMonitor

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - the SDK's signature
        super().__init__(*args, **kwargs)
        cfg = self.config
        self._first_contact_failures = 0
        #: fetch_page wrapped in the retry decorator once per stream, not once per page
        self._fetch_with_retries: Callable[[AccountFetch, str | None, int | None], GraphPage] = self.request_decorator(
            self.fetch_page
        )
        #: any other Graph API call of an account (report runs, ...): same pacing, error table and retries
        self.send_with_retries: Callable[..., requests.Response] = self.request_decorator(self.send)
        self._plans: dict[str, AccountFetch] = {}
        self._get_template: requests.PreparedRequest | None = None
        self._proof = appsecret_proof(cfg["access_token"], cfg.get("app_secret"))
        self._auth = BearerAuth(cfg["access_token"])
        self._statuses = json.dumps(list(cfg.get("effective_statuses") or []))
        self._hidden = HIDDEN_STATUSES - set(cfg.get("effective_statuses") or ())
        self._parse_page = GraphPage.from_node if self.single_object else GraphPage.from_response
        self._requests_session = session_of_run(self._tap, int(cfg["max_concurrent_requests"]))

    # -- where and how ------------------------------------------------------------------------

    @property
    @override
    def url_base(self) -> str:
        return f"{self.config['api_url'].rstrip('/')}/{self.config['api_version']}"

    @property
    @override
    def path(self) -> str:  # type: ignore[override]  # declared from ``edge``, read-only
        return "/act_{account_id}" if self.single_object else f"/act_{{account_id}}/{self.edge}"

    @property
    @override
    def authenticator(self) -> BearerAuth:
        return self._auth

    @property
    @override
    def timeout(self) -> int:
        return float(self.config["request_timeout_seconds"])  # type: ignore[return-value]  # requests takes floats

    @property
    @override
    def partitions(self) -> list[dict[str, Any]]:
        return [{"account_id": account.account_id} for account in self._tap.ad_accounts]  # type: ignore[attr-defined]  # TapMetaAds

    @property
    @override
    def metadata(self) -> MetadataMapping:
        """The SDK's metadata, with ``account_id`` (it names the partition) and the status field always included."""
        mapping = super().metadata
        if not self.selected_by_default:  # chosen on purpose: selecting the stream selects its properties
            for breadcrumb, item in mapping.items():
                if breadcrumb and item.selected_by_default is None:
                    item.selected_by_default = True
        for name in ("account_id", self.status_field, *self.identity_fields):
            entry = mapping.get(("properties", name)) if name else None
            if entry is not None:
                entry.inclusion = Metadata.InclusionType.AUTOMATIC
        return mapping

    def selected_fields(self) -> list[str]:
        """The schema's selected properties Meta serves, in schema order: the ``fields=`` of every request."""
        mask, own = self.mask, self.tap_fields
        return [name for name in self.schema["properties"] if mask.get(("properties", name), False) and name not in own]

    @override
    def get_url_params(self, context: Context | None, next_page_token: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"fields": ",".join(self.selected_fields())}
        if self.status_param and self._statuses != "[]":
            params[self.status_param] = self._statuses
        if next_page_token:
            params["after"] = next_page_token
        return params

    def filtering(self, since: int | None) -> list[dict[str, Any]]:
        """Meta's server-side filter for an incremental read (none where the edge takes no ``filtering``)."""
        if since is None or self.replication_key is None or not self.server_filtering or self.window_params:
            return []
        return [{"field": f"{self.replication_key}", "operator": "GREATER_THAN", "value": since}]

    @override
    def get_new_paginator(self) -> CursorPaginator:
        return CursorPaginator()

    @override
    def parse_response(self, response: requests.Response) -> Iterable[dict]:
        yield from GraphPage.from_response(response).records

    # -- one request, classified --------------------------------------------------------------

    @override
    def validate_response(self, response: requests.Response) -> None:
        """Map Meta's error body through the error table; 2xx passes."""
        if response.status_code <= HTTP_OK_MAX:
            return
        error = GraphError.from_body(response.status_code, parse_json_body(response.text))
        hint = retry_after_seconds(response.headers.get("Retry-After"))
        if hint is None:
            hint = Usage.from_headers(response.headers).reset_seconds
        raise_for_error(error, hint)

    def fetch_page(self, account: AccountFetch, after: str | None, since: int | None) -> GraphPage:
        """One attempt at one page of one account: the edge's parameters, sent, parsed.

        Runs on the account's fetcher thread (``prefetch.py``); everything it changes is the account's own.
        """
        context = account.context
        params = self.get_url_params(context, after)
        if not self.single_object:
            params["limit"] = account.page_size
        if rules := self.filtering(since):
            params["filtering"] = json.dumps(rules)
        if self.window_params:
            if since is not None:
                params["since"] = since
            if account.until is not None:
                params["until"] = account.until
        return self.read_page(account, self.get_url(context), params)

    def read_page(self, account: AccountFetch, url: str, params: dict[str, Any]) -> GraphPage:
        """One attempt at one page: sent, parsed, and what Meta cannot serve worked around.

        - an object Meta cannot serve (``UnservableObjectError``) fails the whole page; the same page (same
          cursor and size) is read again with ``fields=id`` for its ids and next cursor, then each object
          with ``GET /{id}``: the ones Meta still refuses are skipped and reported by the writer, one line each;
        - an optional field Meta refuses (``optional_fields``) is dropped for this account and the page asked
          again without it.
        """
        asked = params.get("fields")
        if account.dropped_fields and isinstance(asked, str):
            params = {**params, "fields": ",".join(f for f in asked.split(",") if f not in account.dropped_fields)}
        try:
            return self._parse_page(self.send(account, "GET", url, params))
        except UnservableObjectError:
            if self.single_object:
                raise
            return self._read_around(account, url, params)
        except (PageTooLargeError, GraphAPIError) as exc:
            if not self._drop_optional_fields(account, params, exc):
                raise
            return self.read_page(account, url, params)

    def _read_around(self, account: AccountFetch, url: str, params: dict[str, Any]) -> GraphPage:
        """The page's objects one by one (see ``read_page``); skipped ones are listed on the page."""
        shell = GraphPage.from_response(self.send(account, "GET", url, {**params, "fields": "id"}))
        rows: list[dict[str, Any]] = []
        skipped: list[tuple[str, str]] = []
        node = {k: v for k, v in params.items() if k == "fields"}
        for row in shell.records:
            object_id = str(row.get("id"))
            try:
                response = self.send(account, "GET", f"{self.url_base}/{object_id}", node, endpoint=f"{self.edge}/id")
            except UnservableObjectError as exc:
                skipped.append((object_id, f"{exc.error.code_label} {exc.error.user_title or exc.error.message}"))
                continue
            rows.extend(GraphPage.from_node(response).records)
        return replace(shell, rows=rows, skipped=skipped)

    def _drop_optional_fields(self, account: AccountFetch, params: dict[str, Any], exc: Exception) -> bool:
        """Whether ``exc`` is Meta refusing optional fields this page asked for; if so they are dropped, once."""
        asked = set(str(params.get("fields", "")).split(",")) & self.optional_fields
        if not asked:
            return False
        floor = min(MIN_PAGE_SIZE, account.page_size_limit)
        if isinstance(exc, PageTooLargeError):
            if account.page_size > floor:
                return False  # first the usual remedy: smaller pages (the retry shrinks them)
            reason = f"it asks for less data even at {account.page_size} rows per page"
        elif isinstance(exc, GraphAPIError) and exc.error is not None and classify(exc.error) is Action.PERMISSION:
            reason = f"permission refused: {exc.error.describe()}"
        else:
            return False
        account.dropped_fields |= asked
        account.stats.dropped_fields.extend(sorted(asked))
        self.logger.warning(
            "Meta does not serve %s of %s to account %s (%s): reading its pages without it",
            ", ".join(sorted(asked)),
            self.name,
            account.context["account_id"],
            reason,
        )
        return True

    def send(
        self, account: AccountFetch, method: str, url: str, params: dict[str, Any], *, endpoint: str | None = None
    ) -> requests.Response:
        """One attempt at one Graph API call of an account: pace, send, note usage, classify.

        Every call of the tap goes through here. A POST carries its parameters as a form body, as Meta's
        SDKs send them. Returns a 2xx response; anything else raises through the error table.
        """
        stats = account.stats
        wait = max(account.pace_wait, account.pacer.held_for())  # this chain's pace, or the account's throttle
        if wait > 0:
            time.sleep(wait)
            stats.pacing_wait_seconds += wait
            account.pace_wait = 0.0
        if self._proof:
            params = {**params, "appsecret_proof": self._proof}
        prepared = self.prepare(method, url, params)
        stats.requests += 1
        started, sent_at = time.perf_counter(), time.monotonic()
        timeouts = (min(CONNECT_TIMEOUT_SECONDS, self.timeout), self.timeout)
        with self.run_chains().calls:  # the run's calls in flight, every stream and account together
            response = self.requests_session.send(
                prepared, timeout=timeouts, allow_redirects=False, **self._environment
            )
        self._log_duration(response, started, account.context, endpoint or self.edge)
        account.pace_wait = account.pacer.observe(Usage.from_headers(response.headers), sent_at=sent_at)
        self.validate_response(response)
        return response

    def prepare(self, method: str, url: str, params: dict[str, Any]) -> requests.PreparedRequest:
        """The request of one call: a POST carries its parameters as a form body, a GET in its URL.

        A GET is a copy of the stream's GET request (headers and auth, prepared once through the SDK's
        ``build_prepared_request``) with its URL set: preparing every call anew (merging the session's
        settings, parsing and re-quoting a URL of a few hundred characters) cost about a fifth of a
        fetcher thread's CPU. The URL is the one requests would build (``tests/test_errors_and_usage.py``).
        """
        base = self.url_base
        if method != "GET" or not url.startswith(f"{base}/"):
            body = {"data": params} if method == "POST" else {"params": params}
            return self.build_prepared_request(method=method, url=url, **body)
        if self._get_template is None:
            self._get_template = self.build_prepared_request(method="GET", url=base)
        prepared = self._get_template.copy()
        prepared.url = f"{url}?{'&'.join(map(_query_pair, params.items()))}" if params else url
        return prepared

    @cached_property
    def _environment(self) -> dict[str, Any]:
        """The environment's proxies and CA bundle for ``api_url``, resolved once: every call goes there.

        What ``Session.request`` would merge on every call (``HTTPS_PROXY``/``NO_PROXY``,
        ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``), which ``Session.send`` alone skips: the proxies cost
        about a tenth of the fetcher thread's CPU when resolved per call (a scan of the whole environment,
        twice), and the environment does not change during a run.
        """
        settings = self.requests_session.merge_environment_settings(self.url_base, {}, None, None, None)
        return {"proxies": settings["proxies"], "verify": settings["verify"], "cert": settings["cert"]}

    def _log_duration(self, response: requests.Response, started: float, context: Context, endpoint: str) -> None:
        """Keep the SDK's ``http_request_duration`` METRIC line, without the URL (it has the proof)."""
        point = metrics.Point(
            "timer",
            metric=metrics.Metric.HTTP_REQUEST_DURATION,
            value=time.perf_counter() - started,
            tags={
                metrics.Tag.STREAM: self.name,
                metrics.Tag.ENDPOINT: endpoint,
                metrics.Tag.HTTP_STATUS_CODE: response.status_code,
                metrics.Tag.STATUS: "succeeded" if response.ok else "failed",
                metrics.Tag.CONTEXT: dict(context),
            },
        )
        metrics.log(self.metrics_logger, point=point)

    # -- retries through the SDK's backoff integration -----------------------------------------

    @override
    def request_decorator(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """The SDK's backoff decorator, minus backoff's own log lines.

        backoff logs every retry and the give-up with the exception's text, which for a connection
        error is the whole URL; ``backoff_handler`` logs each retry instead (reason, attempt, wait,
        fbtrace_id) and a give-up becomes one ``GraphAPIError`` line.
        """
        return backoff.on_exception(
            self.backoff_wait_generator,
            RETRIABLE_EXCEPTIONS,
            max_tries=self.backoff_max_tries,
            on_backoff=self.backoff_handler,
            giveup=self._unreachable_at_first_contact,
            jitter=self.backoff_jitter,
            logger=None,
        )(func)

    def _unreachable_at_first_contact(self, exception: Exception) -> bool:
        """Stop retrying once the first contact has failed to connect ``FIRST_CONTACT_TRIES`` times."""
        if self.monitor.made_progress() or connect_failure(exception) is None:
            return False
        self._first_contact_failures += 1
        return self._first_contact_failures >= FIRST_CONTACT_TRIES

    def _tries_at_first_contact(self, exception: BaseException | None) -> int:
        """How many tries this failure may have before the run has read anything."""
        tries = self.backoff_max_tries()
        return min(tries, FIRST_CONTACT_TRIES) if connect_failure(exception) else tries

    @override
    def backoff_max_tries(self) -> int:
        return int(self.config["max_retries"]) + 1

    @override
    def backoff_wait_generator(self) -> Generator[float, Any, None]:
        """A wait per failure, decided from the exception (Meta's hint) and the attempt number."""
        attempt = 0
        exception = yield 0.0  # primed by backoff with send(None)
        while True:
            attempt += 1
            exception = yield self.retry_wait(exception, attempt)

    @override
    def backoff_jitter(self, value: float) -> float:
        return value  # retry_wait adds its own jitter; hinted waits must stay exact

    def retry_wait(self, exception: BaseException, attempt: int) -> float:
        """Seconds to wait before the next attempt."""
        base = float(self.config["backoff_base_seconds"])
        cap = float(self.config["backoff_max_seconds"])
        if isinstance(exception, PageTooLargeError):
            return 0.0  # the next attempt asks for half as much; nothing to wait for
        if isinstance(exception, ThrottledError) and exception.wait_seconds is not None:
            return min(cap, exception.wait_seconds * random.uniform(1.0, 1.05))  # noqa: S311 - jitter, not crypto
        expo = base * (2.0 ** (attempt - 1))
        if isinstance(exception, ThrottledError):
            expo *= 2.0  # throttled without a hint: Meta's windows are long, lean to the slow side
        if not self.monitor.made_progress() and connect_failure(exception):
            cap = min(cap, FIRST_CONTACT_MAX_WAIT_SECONDS)
        return min(cap, expo * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not crypto

    @override
    def backoff_handler(self, details: Details) -> None:
        """Log and count each retry: reason, attempt n of max, the wait and Meta's trace id."""
        exception = details.get("exception")
        wait = float(details.get("wait") or 0.0)
        reason, trace = retry_reason(exception)
        account: AccountFetch = details["args"][0]
        if isinstance(exception, PageTooLargeError):
            self.shrink_page(account)
        stats = account.stats
        stats.retries[reason] += 1
        if isinstance(exception, ThrottledError):
            stats.throttle_wait_seconds += wait
            account.pacer.hold(wait)  # Meta throttled the account: every chain of it waits, none other
        self.logger.warning(
            "Retrying %s account %s: reason=%s attempt %d of %d, waiting %.2fs%s",
            self.name,
            stats.account_id,
            reason,
            details.get("tries", 0),
            self.backoff_max_tries() if self.monitor.made_progress() else self._tries_at_first_contact(exception),
            wait,
            f" fbtrace_id={trace}" if trace else "",
        )

    def shrink_page(self, account: AccountFetch) -> None:
        """Halve an account's page size (down to a floor) after Meta asked for less data."""
        smaller = max(min(MIN_PAGE_SIZE, account.page_size_limit), account.page_size // 2)
        if smaller < account.page_size:
            account.page_size = smaller
            account.stats.page_size_reductions += 1
            self.logger.warning("Meta asked for less data per call: page size now %d", smaller)
        account.good_pages = 0

    def _page_succeeded(self, account: AccountFetch) -> None:
        """Grow a shrunk page size back after a run of successes."""
        account.good_pages += 1
        if account.page_size < account.page_size_limit and account.good_pages >= GROW_AFTER_PAGES:
            account.page_size = min(account.page_size_limit, account.page_size * 2)
            account.good_pages = 0
            self.logger.info("Page size back up to %d", account.page_size)

    # -- a partition, page by page, with checkpoints ------------------------------------------

    def starting_since(self, context: Context) -> int | None:
        """The GREATER_THAN filter for a fresh pass: the bookmark, or just before ``start_date``."""
        if self.replication_key is None:
            return None
        value = self.get_starting_replication_key_value(context)
        if not value:
            return None
        epoch = checkpoint.to_epoch(str(value))
        start_date = self.config.get("start_date")
        return epoch - 1 if start_date and value == start_date else epoch

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """The SDK's records, after the run's start-of-run check (token health: ``token_health.py``)."""
        self.monitor.run_preflight()
        yield from super().get_records(context)

    @override
    def request_records(self, context: Context | None) -> Iterable[dict]:
        """Write one ad account's pages as its chain delivers them (and the SDK's request-count METRIC)."""
        if context is None:  # pragma: no cover - partitions always give a context
            msg = f"{self.name} needs an account context"
            raise GraphAPIError(msg)
        key = str(context["account_id"])
        chains = self.run_chains()
        if key not in self._plans:  # a partition the run did not plan (a stream synced on its own)
            self.plan_chain(context, chains)
        account = self._plans[key]
        with self.get_http_request_counter() as counter:
            counter.with_context(context)
            try:
                yield from self.write_chain(context, account, chains.read_ahead.items((self.name, key)))
            finally:
                counter.increment(account.stats.requests if account.started else 0)

    def run_chains(self) -> RunChains:
        """The run's chains (``chains.py``): every partition of every selected stream, started once."""
        tap = self._tap

        def selected() -> list[Any]:
            streams = [s for s in tap.streams.values() if isinstance(s, GraphStream) and s.selected]
            return streams if self in streams else [*streams, self]

        return chains_of_run(tap, selected, dict(self.config), is_account_error)

    def plan_chain(self, context: Context, chains: RunChains) -> None:
        """Plan one account's chain on the main thread: where it starts, and the account's shared pacer.

        The SDK would write each partition's starting bookmark when it reaches it; it is written now so that
        chains read ahead start from it too (the SDK writing it again later gives the same value).
        """
        checkpoint.write_starting_value(self, context)
        self._plans[str(context["account_id"])] = self._plan(context, chains.pacer(str(context["account_id"])))

    def fetch_chain(self, account_id: str) -> Iterator[Any]:
        """The chain's items on its fetcher thread (``chains.py``): the account's pages."""
        return self._fetch_partition(self._plans[account_id])

    def write_chain(self, context: Context, account: AccountFetch, items: Iterator[Any]) -> Iterable[dict]:
        """The writer's side of one chain: records and STATE out, on the main thread."""
        return self._write_partition(context, account, items)

    def _plan(self, context: Context, pacer: Pacer) -> AccountFetch:
        """An account's fetching state, starting at its saved resume point or a fresh pass."""
        fresh = self._fresh_point(context)
        saved = ResumePoint.from_state(self.get_context_state(context))
        resuming = saved is not None and saved.after is not None
        until = self._window_until(saved if resuming else None)
        if until is not None:
            fresh.cap = until  # the bookmark never passes what the pass asked for
        return AccountFetch(
            context=dict(context),
            start=saved if saved and saved.after else fresh,
            until=until,
            fresh_since=fresh.since,
            page_size_limit=int(self.config["page_size"]),
            pacer=pacer,
        )

    def _window_until(self, saved: ResumePoint | None) -> int | None:
        """The ``until`` of a ``since``/``until`` edge's pass (``None``: the edge takes none, or the clock is unknown).

        A resumed pass keeps its own (the cap it saved: a cursor belongs to its query); a fresh one takes Meta's
        clock now (measured at start, ``RunMonitor.server_clock_offset``) minus a second.
        """
        if not self.window_params:
            return None
        if saved is not None and saved.cap is not None:
            return saved.cap
        offset = self.monitor.server_clock_offset
        return None if offset is None else int(time.time() + offset) - 1

    def _fetch_partition(self, account: AccountFetch) -> Iterator[GraphPage | None]:
        """An account's pages, in order, on its fetcher thread; ``None`` marks a pass restarted from the bookmark.

        A refused cursor (code 2642) restarts the pass; any other error ends the account, and the
        writer raises it after writing the pages before it.
        """
        stats = account.stats = self.monitor.start(self.name, str(account.context["account_id"]))
        account.started = True
        if self.monitor.has_failed(stats.account_id):
            raise AccountSkippedError(stats.account_id)
        start = account.start
        if start.after:
            stats.resumed_from_page = start.pages + 1
            self.logger.info("Resuming %s account %s at page %d from the saved cursor", *stats.key, start.pages + 1)
        paginator, since = CursorPaginator(start.after), start.since
        while not paginator.finished:
            try:
                page = self._fetch_with_retries(account, paginator.current_value, since)
            except FatalAPIError as exc:
                if not isinstance(exc, CursorRejectedError):
                    self.note_account_error(stats.account_id, exc)
                    raise
                stats.cursor_restarts += 1
                if stats.cursor_restarts > MAX_CURSOR_RESTARTS:
                    raise
                self.logger.warning(
                    "Meta refused the paging cursor of %s account %s (%s); restarting the account from its bookmark",
                    *stats.key,
                    exc,
                )
                paginator, since = CursorPaginator(), account.fresh_since
                yield None
                continue
            self._page_succeeded(account)
            yield page
            paginator.advance(page)  # type: ignore[arg-type]  # GraphPage, see CursorPaginator

    def _write_partition(
        self, context: Context, account: AccountFetch, pages: Iterator[GraphPage | None]
    ) -> Iterable[dict]:
        """The writer's side of one account: records out, a checkpoint every N pages written.

        Only pages already written move the resume point, so every STATE covers exactly them.
        """
        point = replace(account.start)
        every = int(self.config["checkpoint_every_pages"])
        account_id = str(context["account_id"])
        identity = (lambda row: self.identity_of(row, account_id)) if self.identity_key else None
        sent = SentIds(identity)  # only consulted after Meta refused a cursor and the pass restarted
        try:
            for page in pages:
                stats = account.stats
                if page is None:  # the cursor was refused: the pass starts again, skip what was sent
                    point = self._fresh_point(context)
                    sent.restart()
                    continue
                if point.cap is None:
                    point.cap = page.server_time - 1
                point.max_seen = self._newest(page.records, point.max_seen)
                point.pages += 1
                records = sent.unsent(page.records)
                keep = self.record_filter(point.since)
                if keep is not None:
                    records = list(filter(keep, records))
                stats.pages += 1
                stats.records += len(records)
                for object_id, reason in page.skipped:
                    stats.skipped["unservable_object"] += 1
                    self.logger.warning(
                        "Skipped %s %s of account %s: Meta cannot serve it (%s)",
                        self.name,
                        object_id,
                        stats.account_id,
                        reason,
                    )
                self.logger.info(
                    "%s account %s page %d: %d records (%d so far)",
                    *stats.key,
                    point.pages,
                    len(records),
                    stats.records,
                )
                self.page_extracted_at = page.fetched_at
                yield from records
                point.after = page.after if page.has_next else None
                if point.after and point.pages % every == 0:
                    checkpoint.save(self, context, point)
        except (RetriableAPIError, requests.RequestException) as exc:
            self._stop(context, account, point, exc, gave_up=True)
        except FatalAPIError as exc:
            if self.end_failed_account(account, exc, lambda: checkpoint.save(self, context, point)):
                return
            self._stop(context, account, point, exc)
        finally:
            sent.close()
        checkpoint.complete(self, context, point)
        account.stats.status = "complete"
        self.monitor.log_partition(self.logger, account.stats)

    def record_filter(self, since: int | None) -> Callable[[dict[str, Any]], bool] | None:
        """What the tap filters itself where the edge cannot: hidden statuses, and updates up to ``since``.

        ``None`` (nothing to filter, as on ``ads``) keeps the page loop free of per-record work. A record
        without a replication value is kept: a duplicate is harmless, a skipped object is not.
        """
        field = self.status_field if self._hidden else None
        tap_filtered = not self.server_filtering or self.window_params
        key = self.replication_key if since is not None and tap_filtered else None
        if field is None and key is None:
            return None
        hidden = self._hidden

        def keep(record: dict[str, Any]) -> bool:
            if field is not None and record.get(field) in hidden:
                return False
            if key is not None:
                value = record.get(key)
                return not value or checkpoint.to_epoch(value) > since  # type: ignore[operator]  # since is set with key
            return True

        return keep

    def _fresh_point(self, context: Context) -> ResumePoint:
        """A pass from the first page, filtered from the bookmark (or start_date)."""
        return ResumePoint(after=None, pages=0, since=self.starting_since(context), max_seen=None, cap=None)

    def _newest(self, records: list[dict[str, Any]], newest: int | None) -> int | None:
        """The newest replication-key value of a page, in epoch seconds."""
        key = self.replication_key
        if not key:
            return newest
        return checkpoint.newest_epoch([v for record in records if isinstance(v := record.get(key), str)], newest)

    def note_account_error(self, account_id: str, exc: BaseException) -> None:
        """On a chain's thread: an account error stops the account's chains that have not started yet."""
        reason = account_scope_reason(getattr(exc, "error", None))
        if reason is not None:
            self.monitor.account_failed(account_id, reason)

    def end_failed_account(self, account: AccountFetch, exc: BaseException, save: Callable[[], None]) -> bool:
        """End a partition whose account failed alone (``errors.ACCOUNT_SCOPED``); False for any other error.

        The partition's progress is saved (``save``: a rerun resumes there) but not completed, so its bookmark
        does not move. The first partition of the account to fail logs the one ERROR line naming the account and
        the reason; its other partitions are not read (``AccountSkippedError``) and say so at INFO. Every other
        account and stream goes on; ``cli.run`` decides the exit code from ``on_account_error``.
        """
        account_id = str(account.context["account_id"])
        if isinstance(exc, AccountSkippedError):
            reason: str | None = self.monitor.failed_accounts.get(account_id, "failed earlier")
            status = "skipped"
        else:
            reason, status = account_scope_reason(getattr(exc, "error", None)), "account_failed"
        if reason is None:
            return False
        save()
        self.monitor.account_failed(account_id, reason)
        if self.monitor.announce(account_id):  # the account's one ERROR line, at the first of its partitions written
            self.logger.error(
                "Ad account act_%s failed in %s: %s. Its other streams are skipped; every other account goes on",
                account_id,
                self.name,
                self.monitor.failed_accounts.get(account_id, reason),
            )
        elif status == "skipped":
            self.logger.info("%s account %s: not read, the account failed earlier in this run", self.name, account_id)
        if account.started:
            account.stats.status = status
            self.monitor.log_partition(self.logger, account.stats)
        return True

    def _stop(
        self, context: Context, account: AccountFetch, point: ResumePoint, exc: BaseException, *, gave_up: bool = False
    ) -> NoReturn:
        """Save where the partition stands (so a rerun resumes there), then fail with one line."""
        checkpoint.save(self, context, point)
        if account.started:
            account.stats.status = "failed"
            self.monitor.log_partition(self.logger, account.stats)
        unreachable = connect_failure(exc) if gave_up and not self.monitor.made_progress() else None
        if unreachable:
            url = urllib.parse.urlsplit(self.config["api_url"])
            host = f"{url.scheme}://{url.netloc.rpartition('@')[2]}"  # never a user:password part
            msg = (
                f"Cannot connect to {host} ({unreachable}; {self._first_contact_failures} attempts): "
                "check the setting api_url, and that this machine can reach that host"
            )
            raise GraphAPIError(msg) from exc
        if gave_up:
            reason, _ = retry_reason(exc)
            msg = (
                f"Gave up on {self.name} account {context['account_id']} after {self.backoff_max_tries()} "
                f"attempts ({reason}): {without_query(str(exc))}"
            )
            raise GraphAPIError(msg) from exc
        if isinstance(exc, GraphAPIError):
            raise exc
        raise GraphAPIError(str(exc)) from exc

    @override
    def generate_child_contexts(self, record: Record, context: Context | None) -> Iterable[Context | None]:
        """None without child streams: the SDK would otherwise copy the context for every record."""
        if self.child_streams:  # pragma: no cover - no stream of this tap has children yet
            yield from super().generate_child_contexts(record, context)

    @override
    def post_process(self, row: Record, context: Context | None = None) -> Record | None:
        """Add the partition's ``account_id`` when absent; write Meta's times as RFC 3339."""
        if context is not None and "account_id" not in row:
            row["account_id"] = context["account_id"]
        if self.identity_key is not None:
            row[self.identity_key] = self.identity_of(row, str(row["account_id"]))
        for name in self._time_fields:
            value = row.get(name)
            if value:
                row[name] = rfc3339(value)
        return row

    def identity_of(self, row: dict[str, Any], account_id: str) -> str:
        """An object's key: its ``id``, or for objects without one the hash of ``identity_fields`` (see above)."""
        if self.identity_key is None:
            return str(row.get("id"))
        values = [account_id, *(row.get(name) for name in self.identity_fields)]
        return hashlib.sha256(json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()

    @cached_property
    def _time_fields(self) -> tuple[str, ...]:
        """The schema's ``date-time`` properties (read once per stream, not per record)."""
        return tuple(n for n, p in self.schema["properties"].items() if p.get("format") == "date-time")


def is_account_error(exc: BaseException) -> bool:
    """Whether an error ends one account's partition only (the other accounts' fetchers go on)."""
    return isinstance(exc, AccountSkippedError) or account_scope_reason(getattr(exc, "error", None)) is not None


_QUERY = re.compile(r"\?[^\s'\")]*")


def _query_pair(item: tuple[str, object]) -> str:
    """``key=value`` of a query, quoted as ``urlencode`` quotes it.

    Cached (``_quoted_pair``) because every page of an account repeats the same ``fields`` (hundreds of
    characters, which ``urlencode`` quotes one by one in Python), status list and filter; only the cursor
    changes. A value that is neither text nor a number is quoted each time.
    """
    return _quoted_pair(item) if isinstance(item[1], (str, int)) else urllib.parse.urlencode([item])


@functools.lru_cache(maxsize=256)
def _quoted_pair(item: tuple[str, object]) -> str:
    return urllib.parse.urlencode([item])


def without_query(text: str) -> str:
    """Drop query strings from URLs in an exception text: they repeat every parameter of the request."""
    return _QUERY.sub("?...", text)


def rfc3339(value: str) -> str:
    """``2023-03-21T22:41:46-0700`` -> ``2023-03-21T22:41:46-07:00``: same instant, same offset.

    Meta writes offsets without a colon, which JSON Schema's ``date-time`` (RFC 3339) and
    strict targets reject; anything else is passed through untouched.
    """
    if len(value) > 5 and value[-5] in "+-" and value[-3] != ":":  # noqa: PLR2004 - offset "+HHMM"
        return f"{value[:-2]}:{value[-2:]}"
    return value


def retry_reason(exception: BaseException | None) -> tuple[str, str | None]:
    """A short label for a retry (``throttled:17/2446079``, ``http503``, ``ConnectionError``) and the trace id."""
    if isinstance(exception, ThrottledError):
        return f"throttled:{exception.error.code_label}", exception.error.fbtrace_id
    if isinstance(exception, PageTooLargeError):
        return "reduce_data", exception.error.fbtrace_id
    if isinstance(exception, TransientError):
        return f"transient:{exception.reason}", exception.error.fbtrace_id if exception.error else None
    if exception is None:
        return "unknown", None
    return type(exception).__name__, None
