"""The base Graph API stream: URL, fields and parameters of an edge, and the mixins that do the rest.

A concrete stream only declares its name, edge, keys and schema (see ``streams.py``); every
behaviour a production extraction needs lives in the base stream, once, each concern in a module of its own:
``calls.py`` (building and sending one call), ``retries.py`` (the retry policy), ``partitions.py`` (an
account's partition as a chain: fetched, written, checkpointed, ended when its account fails),
``pages.py`` (a page parsed once, the cursor paginator) and ``chains.py`` (every chain of the run at once).
What that amounts to:

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

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import requests
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.types import Context
from singer_sdk.singerlib.catalog import Metadata, MetadataMapping
from typing_extensions import override

from tap_meta_ads.calls import BearerAuth, GraphCalls, appsecret_proof
from tap_meta_ads.checkpoint import CheckpointedBookmarks
from tap_meta_ads.errors import Action, GraphAPIError, PageTooLargeError, UnservableObjectError, classify
from tap_meta_ads.pages import CursorPaginator, GraphPage
from tap_meta_ads.partitions import AccountFetch, PartitionChains
from tap_meta_ads.records import PrunedRecordMessages
from tap_meta_ads.retries import MIN_PAGE_SIZE, RetryPolicy
from tap_meta_ads.session import session_of_run

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Record

    from tap_meta_ads.monitor import RunMonitor

#: Statuses Meta hides (or a backup would not want) unless asked for: they are extracted only when the
#: ``effective_statuses`` setting names them, whether the edge filters them (``status_param``) or the tap does
#: (``status_field``).
HIDDEN_STATUSES = frozenset({"ARCHIVED", "DELETED"})


class GraphStream(CheckpointedBookmarks, PrunedRecordMessages, PartitionChains, RetryPolicy, GraphCalls):
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

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """The SDK's records, after the run's start-of-run check (token health: ``token_health.py``)."""
        self.monitor.run_preflight()
        yield from super().get_records(context)

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


def rfc3339(value: str) -> str:
    """``2023-03-21T22:41:46-0700`` -> ``2023-03-21T22:41:46-07:00``: same instant, same offset.

    Meta writes offsets without a colon, which JSON Schema's ``date-time`` (RFC 3339) and
    strict targets reject; anything else is passed through untouched.
    """
    if len(value) > 5 and value[-5] in "+-" and value[-3] != ":":  # noqa: PLR2004 - offset "+HHMM"
        return f"{value[:-2]}:{value[-2:]}"
    return value
