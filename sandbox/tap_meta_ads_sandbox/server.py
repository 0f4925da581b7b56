"""The sandbox server: Graph API routes, auth, paging answers, control endpoints, and the HTTP layer.

:class:`SandboxApp` decides every answer without touching a socket (so the rules live in one place);
:class:`_Handler` only moves bytes, and acts out the transport faults (reset, truncation, slowness) that
cannot be expressed as an answer. :class:`SandboxServer` runs both in a daemon thread for tests, or in the
foreground for the CLI.
"""

from __future__ import annotations

import email.utils
import functools
import gzip
import hashlib
import hmac
import json
import re
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, overload
from urllib.parse import parse_qsl, urlencode, urlsplit

from tap_meta_ads_sandbox.batch import DEFAULT_VERSION, BatchEntry, element, includes_headers, parse_batch
from tap_meta_ads_sandbox.config import DEFAULT_LIMIT, SandboxConfig
from tap_meta_ads_sandbox.data import MutationResult
from tap_meta_ads_sandbox.edges import EDGES, Collection, member_getter
from tap_meta_ads_sandbox.errors import (
    GraphError,
    invalid_parameter,
    invalid_token,
    reduce_data,
    unsupported_get,
)
from tap_meta_ads_sandbox.faults import (
    BAD_NUMBER,
    HTML_KINDS,
    FaultInjector,
    FaultPlan,
    FaultRule,
    graph_error_for,
    throttle_error,
)
from tap_meta_ads_sandbox.files import CDN_PREFIX, IMAGE_DIR, THUMBNAIL_DIR, Cdn
from tap_meta_ads_sandbox.insights import InsightsService, RawJSON
from tap_meta_ads_sandbox.listings import is_listing, listing_ids, listing_page
from tap_meta_ads_sandbox.objects import CreativeCollection, ImageCollection
from tap_meta_ads_sandbox.paging import Cursor, EdgeQuery, parse_fields, parse_query, select_page
from tap_meta_ads_sandbox.stats import Stats
from tap_meta_ads_sandbox.store import DataStore, Quirks
from tap_meta_ads_sandbox.tokens import TokenProfile, Tokens
from tap_meta_ads_sandbox.usage import RateLimiter, VirtualClock

_GRAPH_PATH = re.compile(r"^/(?P<version>[^/]+)/(?P<node>[^/]+)(?:/(?P<edge>[^/]+))?/?$")
_VERSION = re.compile(r"^v\d{1,2}\.0$")
# Where batches are sent: the root, with or without a version (``POST /``, ``POST /v25.0/``).
_BATCH_PATH = re.compile(r"^/(?:(?P<version>v\d[^/]*)/?)?$")
# The batch's params its entries inherit (an entry may send its own): the token and its proof.
_INHERITED_PARAMS = ("access_token", "appsecret_proof")
_ACCOUNT_NODE = re.compile(r"^act_(?P<id>\d+)$")
_TRUTH_PATH = re.compile(r"^/_sandbox/truth/act_(?P<id>\d+)(?:/(?P<edge>[a-z_]+))?/?$")

JSON_TYPE = "application/json; charset=UTF-8"
HTML_TYPE = "text/html; charset=utf-8"


@dataclass(frozen=True)
class _GraphRequest:
    """One Graph API request as the app sees it: no socket, just what Meta would read."""

    method: str
    path: str
    pairs: list[tuple[str, str]]
    params: dict[str, str]
    headers: dict[str, str]
    host: str
    account_id: str | None  # a configured account named by the path, else None
    inherited: dict[str, str] = field(default_factory=dict)  # a batch's access_token/appsecret_proof

    @property
    def credentials(self) -> dict[str, str]:
        """The params the call authenticates with: its own, over those its batch passed down."""
        return {**self.inherited, **self.params} if self.inherited else self.params


# Rows per body chunk of a page: about 50 KB with every field. Why chunks: a page of 500 ads is close to
# 1 MB, and a buffer that large is a fresh mmap for malloc, so building it (join, then encode) page-faults
# every one of its pages, twice per page served; chunks below malloc's mmap threshold reuse freed memory.
_ROWS_PER_CHUNK = 32


@dataclass
class Reply:
    """An answer to send: status, headers, body (in chunks), and an optional transport fault to act out."""

    status: int
    chunks: list[bytes]  # the body, in order: at least one chunk (an empty body is [b""])
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON_TYPE
    action: str | None = None
    wait_seconds: float = 0.0

    @property
    def body(self) -> bytes:
        """The whole body in one piece (a copy when it came in chunks)."""
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)

    @property
    def length(self) -> int:
        """The body's length in bytes, for ``Content-Length``."""
        return sum(map(len, self.chunks))


def json_reply(status: int, doc: object, headers: dict[str, str] | None = None) -> Reply:
    """Serialise ``doc`` once, compactly, as Meta does (a ``RawJSON`` is already)."""
    text = doc if isinstance(doc, RawJSON) else json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    body = text.encode()
    return Reply(status, [body], dict(headers or {}))


@functools.lru_cache(maxsize=256)
def _query_without_cursor(pairs: tuple[tuple[str, str], ...]) -> str:
    """The request's query minus its cursor, URL-encoded and ready for one more ``&param=...``.

    Cached because every page of a pagination run repeats the same query (a long ``fields`` list that
    ``urlencode`` would quote character by character), only the cursor changes.
    """
    base = urlencode([(k, v) for k, v in pairs if k not in ("after", "before")])
    return base + "&" if base else ""


def _check_version(version: str) -> str:
    """Return ``version`` if it is shaped like Meta's (``vNN.0``); code 2635 otherwise."""
    if not _VERSION.match(version):
        raise GraphError(400, 2635, f"(#2635) Unknown or unsupported API version {version}")
    return version


def _outcome(reply: Reply, rows: int) -> str:
    """How a call went, for the stats: ``ok``, ``throttled`` (rows -1) or ``error:CODE``."""
    if rows < 0:
        return "throttled"
    if reply.status == HTTPStatus.OK:
        return "ok"
    return f"error:{json.loads(reply.body)['error']['code']}"


def control_error(message: str, status: int = 400) -> Reply:
    """A control-endpoint error: one line of JSON, never a traceback."""
    return json_reply(status, {"error": message})


class SandboxApp:
    """Everything the sandbox knows and decides; thread-safe, socket-free."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.clock = VirtualClock()
        self.store = DataStore(
            config.seed,
            dict(config.accounts),
            config.archived_ratio,
            config.deleted_ratio,
            dict(config.time_zones),
            cdn=Cdn(config.seed, config.asset_url_ttl_seconds),
            quirks=Quirks(config.incomplete_creative_every, config.heavy_rule_every),
        )
        self.tokens = Tokens(
            self.clock.now(),
            config.tokens,
            {t: TokenProfile.from_mapping(dict(p)) for t, p in config.token_profiles.items()},
        )
        #: Every request the CDN answered: (path, HTTP status, whether it carried an Authorization header).
        self.cdn_log: list[dict[str, Any]] = []
        #: HTTP statuses the CDN answers its next requests with instead of the file (a transient fault plan).
        self.cdn_faults: list[int] = []
        self._cdn_lock = threading.Lock()
        self.limiter = RateLimiter(
            config.rate_window_seconds,
            config.account_budget,
            config.app_budget,
            config.throttle_code,
            usage_headers=config.usage_headers,
        )
        self.stats = Stats()
        self.insights = InsightsService(config.seed, self.store.ads, self.clock.now)
        self.injector = FaultInjector(config.faults)
        self.stop_event = threading.Event()
        self._field_bytes: dict[str, dict[str, float]] = {}
        self._field_bytes_lock = threading.Lock()

    # ----------------------------------------------------------------- Graph API

    def graph(self, method: str, target: str, headers: dict[str, str], host: str, body: bytes = b"") -> Reply:
        """Answer one Graph API request (anything outside ``/_sandbox/``) and count it.

        A POST's form body counts as parameters, as on Meta (clients send ``POST /act_{id}/insights``
        parameters there). ``POST /`` and ``POST /{version}/`` are batch requests (see ``batch.py``). The
        configured latency is Meta's time to answer, once per HTTP request (Meta runs a batch's entries in
        parallel): the answer leaves that long after the request came, the sandbox's own computing included.
        Added on top of it, a client's chain of calls took the sandbox's CPU time besides the latency (7% of
        a chain of pages of creatives), which the benchmarks then counted against the client.
        """
        started = time.monotonic()
        split = urlsplit(target)
        pairs = parse_qsl(split.query, keep_blank_values=True)
        if body and "x-www-form-urlencoded" in headers.get("content-type", ""):
            pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        root = _BATCH_PATH.match(split.path) if method == "POST" else None
        if root is not None:
            reply = self._serve_batch(split.path, root["version"], pairs, headers, host)
        else:
            reply = self._graph_one(method, split.path, pairs, headers, host)
        if self.config.latency_seconds:
            reply.wait_seconds += max(0.0, self.config.latency_seconds - (time.monotonic() - started))
        return reply

    def _graph_one(
        self,
        method: str,
        path: str,
        pairs: list[tuple[str, str]],
        headers: dict[str, str],
        host: str,
        *,
        inherited: dict[str, str] | None = None,
    ) -> Reply:
        """Answer and count one Graph call, alone or as an entry of a batch (then ``inherited`` is not None).

        The one path every call takes: its route and account, the fault plan, the answer, the stats. A
        transport fault is only marked on the reply (``action``); the caller acts it out.
        """
        params = dict(pairs)
        route, account_id = self._route(method, path)
        _, rule = self.injector.next_request(account_id)
        req = _GraphRequest(method, path, pairs, params, headers, host, account_id, inherited or {})
        fault = self._fault_error(rule, req) if rule is not None else None
        if rule is not None and fault is not None:
            reply, rows, outcome = fault, 0, f"fault:{rule.kind}"
        else:
            reply, rows = self._graph_answer(req)
            outcome = _outcome(reply, rows)
            if rule is not None:  # a transport fault: the real answer, cut or delayed on the way out
                outcome = f"fault:{rule.kind}"
                self._act_out(rule, reply)
        self.stats.record(
            route=route,
            account_id=account_id,
            params=params,
            status=reply.status,
            outcome=outcome,
            rows=max(rows, 0),
            token_in_url="access_token" in params,
            batched=inherited is not None,
        )
        return reply

    def _route(self, method: str, path: str) -> tuple[str, str | None]:
        """A call's name in the stats and the configured account it concerns (the fault plan's account)."""
        route, account_id = "unknown", None
        m = _GRAPH_PATH.match(path)
        if m is not None:
            route = m["edge"] or "node"
            acct = _ACCOUNT_NODE.match(m["node"])
            account_id = acct["id"] if acct and acct["id"] in self.store.ads else None
            if m["node"] == "debug_token":
                route = "debug_token"
            elif acct is None and (found := self.store.object_at(m["node"])) is not None:
                route, account_id = "object", found[0].account_id
            if self.insights.owns(method, m["node"], m["edge"]):
                route, account_id = self.insights.route(method, m["node"], m["edge"])
        return route, account_id

    def _serve_batch(
        self, path: str, version: str | None, pairs: list[tuple[str, str]], headers: dict[str, str], host: str
    ) -> Reply:
        """A batch request: checked and counted as one call (route ``batch``), then each entry as a call alone.

        The batch itself is an account-less Graph call: the fault plan counts it (a fault on it fails the
        whole batch: before any entry runs, unless it is a transport fault, which cuts the full answer), and
        it needs a valid token, which its entries inherit. It is logged before its entries, without its
        ``batch`` parameter.
        """
        params = dict(pairs)
        version = version or DEFAULT_VERSION
        req = _GraphRequest("POST", path, pairs, params, headers, host, None)
        _, rule = self.injector.next_request(None, batch=True)
        refused = self._fault_error(rule, req) if rule is not None else None
        entries: list[BatchEntry] = []
        if refused is None:
            try:
                entries = self._open_batch(req, version)
            except GraphError as exc:
                refused = json_reply(exc.status, exc.body(), exc.headers)
        outcome = "ok"
        if rule is not None:
            outcome = f"fault:{rule.kind}"
        elif refused is not None:
            outcome = _outcome(refused, 0)
        self.stats.record(
            route="batch",
            account_id=None,
            # Not the batch itself: its entries are logged one by one, and one may carry its own token.
            params={k: v for k, v in params.items() if k != "batch"},
            status=200 if refused is None else refused.status,
            outcome=outcome,
            rows=0,
            token_in_url="access_token" in params,
        )
        if refused is not None:
            return refused
        inherited = {k: params[k] for k in _INHERITED_PARAMS if k in params}
        show_headers = includes_headers(params)
        answers = [
            self._batch_entry(
                e, version=version, headers=headers, host=host, inherited=inherited, include_headers=show_headers
            )
            for e in entries
        ]
        reply = json_reply(200, answers, {"facebook-api-version": version})
        if rule is not None:
            self._act_out(rule, reply)
        return reply

    def _open_batch(self, req: _GraphRequest, version: str) -> list[BatchEntry]:
        """Check a batch before any entry runs, in Meta's order (version, token, then the batch itself)."""
        _check_version(version)
        token = self._authenticate(req)
        self.tokens.check_use(token, self.clock.now(), None)
        return parse_batch(req.params.get("batch"))

    def _batch_entry(
        self,
        entry: BatchEntry,
        *,
        version: str,
        headers: dict[str, str],
        host: str,
        inherited: dict[str, str],
        include_headers: bool,
    ) -> dict[str, Any] | None:
        """One entry's answer: the call answered as if sent alone, or ``None`` where a transport fault hit it.

        ``None`` is what Meta answers for an entry that timed out; the batch itself still answers.
        """
        path, query = entry.target(version)
        pairs = parse_qsl(query, keep_blank_values=True) + parse_qsl(entry.body, keep_blank_values=True)
        reply = self._graph_one(entry.method, path, pairs, headers, host, inherited=inherited)
        if reply.action is not None:
            return None
        return element(reply.status, reply.content_type, reply.headers, reply.body, include_headers=include_headers)

    def _graph_answer(self, req: _GraphRequest) -> tuple[Reply, int]:
        """The answer without faults: (reply, rows served); rows -1 marks a throttled answer."""
        usage: dict[str, str] = {}
        try:
            m = _GRAPH_PATH.match(req.path)
            if m is not None and self.insights.owns(req.method, m["node"], m["edge"]):
                return self._serve_insights(req, m)
            return self._serve_edge(req, usage)
        except GraphError as exc:
            return json_reply(exc.status, exc.body(), {**usage, **exc.headers}), 0

    def _serve_edge(self, req: _GraphRequest, usage: dict[str, str]) -> tuple[Reply, int]:
        """Check the request in Meta's order (path, version, token, object, budget, params) and page it.

        ``usage`` receives the usage headers as soon as the call is counted, so errors raised after that
        point carry them too.
        """
        if req.method != "GET":
            raise invalid_parameter(f"(#100) The sandbox serves GET only, not {req.method}")
        m = _GRAPH_PATH.match(req.path)
        if m is None:
            raise GraphError(400, 2500, f"Unknown path components: {req.path}", is_transient=False)
        _check_version(m["version"])
        token = self._authenticate(req)
        if is_listing(m["node"], m["edge"], self.config.businesses):
            return self._serve_listing(req, m, token)
        if m["node"] == "debug_token" and m["edge"] is None:
            doc = self.tokens.debug(token, req.params.get("input_token"), self.clock.now())
            return json_reply(200, doc, {"facebook-api-version": m["version"]}), 0
        acct = _ACCOUNT_NODE.match(m["node"])
        found = self.store.object_at(m["node"]) if acct is None and m["edge"] is None else None
        if found is not None:
            return self._serve_object(req, found[0], found[1], version=m["version"], token=token, usage=usage)
        if acct is None or acct["id"] not in self.store.ads:
            raise unsupported_get(m["node"])
        account_id = acct["id"]
        self.tokens.check_use(token, self.clock.now(), account_id)
        edge = EDGES.get(m["edge"] or "")
        if edge is None and m["edge"] is not None:
            raise invalid_parameter(f"(#100) Tried accessing nonexisting field ({m['edge']}) on node type (AdAccount)")
        now = self.clock.now()
        decision = self.limiter.call(account_id, now)
        usage.update(decision.headers)
        if decision.throttled:
            err = throttle_error(decision.code, decision.subcode)
            return json_reply(err.status, err.body(), usage), -1
        if edge is None:  # GET /act_{id}: the account node itself, one object and no paging
            node = self.store.accounts[account_id]
            fields = parse_fields(req.params.get("fields"), node)
            members = node.members(0)
            body = "{" + ",".join(filter(None, (members[f] for f in fields))) + "}"
            return Reply(200, [body.encode()], {**usage, "facebook-api-version": m["version"]}), 1
        coll = edge.collection(self.store, account_id)
        if coll is None:  # pragma: no cover - every configured account has every edge
            raise unsupported_get(m["node"])
        query = parse_query(
            req.params,
            coll,
            edge=edge.name,
            account_id=account_id,
            now=now,
            max_limit=self.config.max_limit,
            default_limit=DEFAULT_LIMIT,
            cursor_ttl=self.config.cursor_ttl_seconds,
        )
        self.tokens.check_fields(token, query.fields, coll.node_type)
        self._check_page_budget(edge.name, coll, query, edge.page_budget_bytes)
        chunks, rows = self._page_body(req, edge=edge.name, account_id=account_id, coll=coll, query=query, now=int(now))
        return Reply(200, chunks, {**usage, "facebook-api-version": m["version"]}), rows

    def _serve_listing(self, req: _GraphRequest, m: re.Match[str], token: str) -> tuple[Reply, int]:
        """A page of ``/me/adaccounts`` or a business's account listing (see ``listings.py``)."""
        cfg = self.config
        ids = listing_ids(
            m["node"], m["edge"], configured=self.store.account_ids(), me_accounts=cfg.me_accounts,
            businesses=cfg.businesses,
        )  # fmt: skip

        def row_of(account_id: str) -> dict[str, Any]:
            node = self.store.accounts[account_id].row(0)
            return {**node, "account_status": cfg.account_statuses.get(account_id, 1)}

        doc = listing_page(
            ids, params=req.params, pairs=req.pairs, row_of=row_of, url=f"http://{req.host}{req.path}", token=token
        )
        return json_reply(200, doc, {"facebook-api-version": m["version"]}), len(doc["data"])

    def _serve_insights(self, req: _GraphRequest, m: re.Match[str]) -> tuple[Reply, int]:
        """Insights requests (report runs and their rows) are answered by ``insights.py``."""
        _check_version(m["version"])
        token = self._authenticate(req)
        self.tokens.check_use(token, self.clock.now(), req.account_id)
        url = f"http://{req.host}{req.path}"
        status, doc, headers, rows = self.insights.serve(req.method, m["node"], m["edge"], req.params, url)
        return json_reply(status, doc, {**headers, "facebook-api-version": m["version"]}), rows

    def _serve_object(
        self, req: _GraphRequest, coll: Collection, index: int, *, version: str, token: str, usage: dict[str, str]
    ) -> tuple[Reply, int]:
        """``GET /{object_id}``: one object of an account's edge, with the asked fields (Meta's node read)."""
        self.tokens.check_use(token, self.clock.now(), coll.account_id)
        decision = self.limiter.call(coll.account_id, self.clock.now())
        usage.update(decision.headers)
        if decision.throttled:
            err = throttle_error(decision.code, decision.subcode)
            return json_reply(err.status, err.body(), usage), -1
        fields = parse_fields(req.params.get("fields"), coll)
        if coll.may_refuse and (refused := coll.refusal(index, fields)) is not None:
            raise refused
        members = coll.members(index)
        body = "{" + ",".join(filter(None, (members[f] for f in fields))) + "}"
        return Reply(200, [body.encode()], {**usage, "facebook-api-version": version}), 1

    def _authenticate(self, req: _GraphRequest) -> str:
        """Token from the ``access_token`` param or the Authorization header, then the appsecret_proof."""
        params = req.credentials
        token = params.get("access_token")
        if token is None:
            auth = req.headers.get("authorization", "")
            scheme, _, value = auth.partition(" ")
            if scheme.lower() in ("bearer", "oauth"):
                token = value.strip()
        if not token or not self.tokens.known(token):
            raise invalid_token()
        secret = self.config.app_secret
        if secret is None:
            return token
        proof = params.get("appsecret_proof")
        if proof is None:
            raise GraphError(
                400,
                100,
                "API calls from the server require an appsecret_proof argument",
                error_type="GraphMethodException",
                is_transient=False,
            )
        expected = hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(proof.lower(), expected):
            raise GraphError(
                400,
                100,
                "Invalid appsecret_proof provided in the API argument",
                error_type="GraphMethodException",
                is_transient=False,
            )
        return token

    def field_bytes(self, edge: str, coll: Collection) -> dict[str, float]:
        """Average serialised bytes per field, measured once per edge on a sample of real rows."""
        with self._field_bytes_lock:
            sizes = self._field_bytes.get(edge)
            if sizes is None:
                sample = [coll.row(i) for i in range(min(coll.count, 200))] or [{}]
                sizes = {
                    f: sum(len(json.dumps(r.get(f), separators=(",", ":"))) + len(f) + 4 for r in sample) / len(sample)
                    for f in coll.fields
                }
                self._field_bytes[edge] = sizes
            return sizes

    def _check_page_budget(self, edge: str, coll: Collection, query: EdgeQuery, edge_budget: int | None) -> None:
        """Fail a page whose estimated size (rows asked x bytes per row) is over the budget, as Meta does.

        The budget is the smaller of the configured one and the edge's own (see ``edges.py``).
        """
        budgets = [b for b in (self.config.page_budget_bytes, edge_budget) if b is not None]
        if not budgets:
            return
        budget = min(budgets)
        sizes = self.field_bytes(edge, coll)
        estimate = query.limit * (2 + sum(sizes[f] for f in query.fields))
        if estimate > budget:
            raise reduce_data()

    def _page_body(
        self, req: _GraphRequest, *, edge: str, account_id: str, coll: Collection, query: EdgeQuery, now: int
    ) -> tuple[list[bytes], int]:
        """Serialise one page (in chunks): rows projected to the asked fields, cursors, the full ``next`` URL."""
        page = select_page(coll, query, self.config.empty_page_every)
        if coll.may_refuse:  # an object Meta cannot serve with these fields fails the whole page
            for i in page.positions:
                refused = coll.refusal(i, query.fields)
                if refused is not None:
                    raise refused
        paging: dict[str, Any] = {}
        after = Cursor(edge, account_id, page.next_position, page.page, now).encode()
        if page.positions:
            before = Cursor(edge, account_id, page.positions[0], page.page, now).encode()
            paging["cursors"] = {"before": before, "after": after}
        elif page.has_next:
            paging["cursors"] = {"after": after}
        url = f"http://{req.host}{req.path}?" + _query_without_cursor(tuple(req.pairs))
        if page.has_previous and page.positions:
            paging["previous"] = url + urlencode([("before", paging["cursors"]["before"])])
        if page.has_next:
            paging["next"] = url + urlencode([("after", after)])
        tail = "]}"
        if paging:
            tail = '],"paging":' + json.dumps(paging, separators=(",", ":")) + "}"
        # The hot path. Rows are joined from per-field JSON member texts: no dicts, no json.dumps per row.
        pick = member_getter(query.fields)
        members = coll.members
        rows = [",".join(filter(None, pick(members(i)))) for i in page.positions]
        if not rows:
            return [('{"data":[' + tail).encode()], 0
        # The page's head and tail are glued to its first and last row, and rows to their neighbours by
        # "},{", so the body is the concatenation of the chunks (see _ROWS_PER_CHUNK for why chunks).
        rows[0] = '{"data":[{' + rows[0]
        rows[-1] = rows[-1] + "}" + tail
        last = len(rows) - 1
        chunks = [
            ("},{".join(rows[k : k + _ROWS_PER_CHUNK]) + ("},{" if k + _ROWS_PER_CHUNK <= last else "")).encode()
            for k in range(0, len(rows), _ROWS_PER_CHUNK)
        ]
        return chunks, len(rows)

    def _fault_error(self, rule: FaultRule, req: _GraphRequest) -> Reply | None:
        """The answer of a fault that replaces the real one; ``None`` for a transport fault (see ``_act_out``)."""
        kind = rule.kind
        err = graph_error_for(kind)
        if err is not None:
            # A JSON fault comes from the API itself, so it carries the usage headers as they stand.
            return json_reply(err.status, err.body(), self.limiter.peek(req.account_id, self.clock.now()))
        if kind in HTML_KINDS:
            status, reason = HTML_KINDS[kind]
            html = f"<html><head><title>{status} {reason}</title></head><body>{status} {reason}</body></html>"
            return Reply(status, [html.encode()], content_type=HTML_TYPE)
        if kind == "http429":
            body = b"<html><body>429 Too Many Requests</body></html>"
            headers = {"Retry-After": str(self.injector.plan.retry_after_seconds)}
            return Reply(429, [body], headers, content_type=HTML_TYPE)
        return None

    def _act_out(self, rule: FaultRule, reply: Reply) -> None:
        """Mark a transport fault (reset, truncated, slow) on the real answer, for the HTTP layer to act out.

        ``bad_number`` changes the answer itself: its first row's ``spend`` becomes ``"n/a"``.
        """
        if rule.kind == BAD_NUMBER:
            doc = json.loads(reply.body) if reply.status == HTTPStatus.OK else None
            rows = doc.get("data") if isinstance(doc, dict) else None
            if isinstance(rows, list) and rows and isinstance(rows[0], dict):
                rows[0]["spend"] = "n/a"
                reply.chunks = [json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()]
            return
        reply.action = rule.kind
        if rule.kind == "slow":
            reply.wait_seconds = self.injector.plan.slow_seconds

    # ----------------------------------------------------------------- the CDN (files.py)

    def cdn(self, target: str, headers: dict[str, str]) -> Reply:
        """A file behind a signed image or thumbnail URL; 403 for an expired or forged signature, as Meta's CDN."""
        split = urlsplit(target)
        path = split.path[len(CDN_PREFIX) :]
        query = dict(parse_qsl(split.query))
        found = self._cdn_file(path)
        with self._cdn_lock:
            fault = self.cdn_faults.pop(0) if self.cdn_faults else None
        if fault is not None:
            reply = Reply(fault, [f"<html><body>{fault}</body></html>".encode()], content_type=HTML_TYPE)
        elif found is None:
            reply = Reply(404, [b"Not Found"], content_type="text/plain")
        elif (refused := self.store.cdn.check(path, query.get("oh"), query.get("oe"), self.clock.now())) is not None:
            reply = Reply(403, [refused.encode()], content_type="text/plain")
        else:
            content, mime = found
            reply = Reply(200, [content], {"Cache-Control": "max-age=1209600, no-transform"}, content_type=mime)
        with self._cdn_lock:
            self.cdn_log.append({"path": path, "status": reply.status, "authorization": "authorization" in headers})
        return reply

    def _cdn_file(self, path: str) -> tuple[bytes, str] | None:
        """The bytes and MIME type at a CDN path, or ``None``."""
        directory, _, name = path.rpartition("/")
        if directory == IMAGE_DIR and name.endswith("_n.jpg"):
            image_hash, _, account_id = name.removesuffix("_n.jpg").partition("_")
            images = self.store.edges["adimages"].get(account_id)
            index = images.index_of(image_hash) if isinstance(images, ImageCollection) else None
            return images.file(index) if isinstance(images, ImageCollection) and index is not None else None
        if directory == THUMBNAIL_DIR and name.endswith("_thumb_n.png"):
            found = self.store.object_at(name.removesuffix("_thumb_n.png"))
            if found is not None and isinstance(found[0], CreativeCollection):
                return found[0].thumbnail_file(found[1])
        return None

    def asset_files(self, account_id: str) -> dict[str, tuple[bytes, str]]:
        """Ground truth: every file an account's listed images and creatives show, by URL without query string."""
        files: dict[str, tuple[bytes, str]] = {}
        images = self.store.collection("adimages", account_id)
        creatives = self.store.collection("adcreatives", account_id)
        for coll, fields in ((images, ("url",)), (creatives, ("image_url", "thumbnail_url"))):
            for index in coll.iter_visible(coll.default_visible - {"DELETED"}):
                row = coll.row(index)
                for name in fields:
                    if row.get(name):
                        url = row[name].split("?", 1)[0]
                        found = self._cdn_file(urlsplit(url).path[len(CDN_PREFIX) :])
                        if found is not None:
                            files[url] = found
        return files

    # ----------------------------------------------------------------- Python / control API

    def mutate(
        self,
        account_id: str,
        *,
        edge: str = "ads",
        update: int = 0,
        create: int = 0,
        delete: int = 0,
        update_ids: list[str] | tuple[str, ...] = (),
        delete_ids: list[str] | tuple[str, ...] = (),
    ) -> MutationResult:
        """Update, create and delete objects of one edge; every touched object gets one fresh ``updated_time``."""
        result, stamp = self.store.mutate(
            str(account_id),
            self.clock.now(),
            edge=edge,
            update=update,
            create=create,
            delete=delete,
            update_ids=update_ids,
            delete_ids=delete_ids,
        )
        self.clock.ensure_at_least(stamp)
        return result

    def set_faults(self, plan: FaultPlan) -> None:
        """Replace the fault plan; its request numbering starts again at 1."""
        self.injector = FaultInjector(plan)

    def visible(
        self, edge: str, account_id: str, statuses: list[str] | tuple[str, ...] | None = None
    ) -> list[dict[str, Any]]:
        """Ground truth: every object of an edge (all fields) listed under those statuses, in edge order.

        ``statuses`` are the edge's status values (``effective_status`` for ads, ad sets and campaigns);
        ``None`` is what the edge lists by default. An edge without a status parameter never lists more than
        its default, whatever is asked (deleted videos and custom conversions are gone).
        """
        coll = self.store.collection(edge, str(account_id))
        if statuses is None:
            wanted = coll.default_visible
        else:
            bad = [s for s in statuses if s not in coll.statuses]
            if bad:
                raise ValueError(f"unknown status {bad[0]!r} for {edge}")
            wanted = frozenset(statuses)
            if coll.status_param is None:
                wanted &= coll.default_visible
        return [coll.row(i) for i in coll.iter_visible(wanted)]

    def visible_ads(
        self, account_id: str, effective_statuses: list[str] | tuple[str, ...] | None = None
    ) -> list[dict[str, Any]]:
        """Ground truth: every ad (all fields) visible under those statuses, in edge order."""
        return self.visible("ads", account_id, effective_statuses)

    def account(self, account_id: str) -> dict[str, Any]:
        """Ground truth: the ad account node with every field."""
        node = self.store.accounts.get(str(account_id))
        if node is None:
            raise ValueError(f"unknown account_id {account_id!r}")
        return node.row(0)

    def control(self, method: str, target: str, body: bytes) -> Reply:
        """Answer a ``/_sandbox/...`` control request (JSON in, JSON out, no auth)."""
        split = urlsplit(target)
        path = split.path.rstrip("/")
        try:
            doc: Any = json.loads(body) if body.strip() else {}
        except ValueError:
            return control_error("request body must be JSON")
        if method == "POST" and not isinstance(doc, dict):
            return control_error("request body must be a JSON object")
        try:
            return self._control(method, path, split.query, doc)
        except (ValueError, TypeError) as exc:
            return control_error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    def _control(self, method: str, path: str, query: str, doc: dict[str, Any]) -> Reply:
        handler = self._control_routes().get((method, path))
        if handler is not None:
            return json_reply(200, handler(doc))
        m = _TRUTH_PATH.match(path)
        if method == "GET" and m is not None:
            return json_reply(200, self._control_truth(m["id"], m["edge"], query))
        return control_error(f"no control endpoint {method} {path}", 404)

    def _control_routes(self) -> dict[tuple[str, str], Callable[[dict[str, Any]], object]]:
        """The control endpoints: each takes the JSON body and returns the JSON answer."""
        return {
            ("GET", "/_sandbox/stats"): lambda _: self.stats.snapshot(),
            ("POST", "/_sandbox/stats/reset"): self._control_stats_reset,
            ("GET", "/_sandbox/health"): lambda _: {"ok": True, "now": self.clock.now()},
            ("POST", "/_sandbox/mutate"): lambda doc: self._control_mutate(doc).as_dict(),
            ("GET", "/_sandbox/clock"): lambda _: {"now": self.clock.now()},
            ("POST", "/_sandbox/clock"): self._control_clock,
            ("POST", "/_sandbox/faults"): self._control_faults,
            ("GET", "/_sandbox/config"): lambda _: self.limiter.settings(),
            ("POST", "/_sandbox/config"): self._control_config,
            ("GET", "/_sandbox/insights"): lambda _: self.insights.describe(),
            ("POST", "/_sandbox/tokens"): self._control_tokens,
            ("GET", "/_sandbox/cdn"): lambda _: {"requests": list(self.cdn_log)},
            ("POST", "/_sandbox/cdn"): self._control_cdn,
            ("POST", "/_sandbox/insights"): self.insights.control,
        }

    def _control_tokens(self, doc: dict[str, Any]) -> object:
        """``{"token": "...", ...profile}``: add or replace a token (see ``tokens.py``)."""
        token = doc.pop("token", None)
        if not isinstance(token, str) or not token:
            raise ValueError("token must be a non-empty string")
        self.tokens.set(token, TokenProfile.from_mapping(doc), self.clock.now())
        return {"ok": True}

    def _control_cdn(self, doc: dict[str, Any]) -> object:
        """``{"fail_next": [503, ...]}``: the CDN's next answers are these statuses."""
        _only_keys(doc, {"fail_next"})
        statuses = doc.get("fail_next", [])
        if not isinstance(statuses, list) or not all(isinstance(v, int) and 400 <= v <= 599 for v in statuses):  # noqa: PLR2004
            raise ValueError("fail_next must be a list of HTTP error statuses")
        with self._cdn_lock:
            self.cdn_faults[:] = statuses
        return {"fail_next": statuses}

    def _control_stats_reset(self, doc: dict[str, Any]) -> object:
        _only_keys(doc, set())
        self.stats.reset()
        return {"ok": True}

    def _control_clock(self, doc: dict[str, Any]) -> object:
        _only_keys(doc, {"advance_seconds"})
        return {"now": self.clock.advance(_number(doc, "advance_seconds", 0.0))}

    def _control_faults(self, doc: dict[str, Any]) -> object:
        _only_keys(doc, {"faults", "seed", "slow_seconds", "retry_after_seconds"})
        specs = doc.get("faults", [])
        if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
            raise ValueError("faults must be a list of SPEC strings")
        plan = FaultPlan(
            tuple(specs),
            seed=int(_number(doc, "seed", 0)),
            slow_seconds=_number(doc, "slow_seconds", 30.0),
            retry_after_seconds=int(_number(doc, "retry_after_seconds", 1)),
        )
        self.set_faults(plan)
        return {"faults": [r.spec for r in plan.rules], "seed": plan.seed}

    def _control_config(self, doc: dict[str, Any]) -> object:
        _only_keys(doc, {"rate_window_seconds", "account_budget", "app_budget", "throttle_code", "usage_headers"})
        if "usage_headers" in doc and not isinstance(doc["usage_headers"], bool):
            raise ValueError("usage_headers must be true or false")
        if "throttle_code" in doc and not isinstance(doc["throttle_code"], str):
            raise ValueError('throttle_code must be a string such as "17/2446079"')
        for key in ("account_budget", "app_budget"):
            if key in doc and (isinstance(doc[key], bool) or not isinstance(doc[key], int)):
                raise ValueError(f"{key} must be an integer")
        self.limiter.configure(
            window_seconds=_number(doc, "rate_window_seconds", None),
            account_budget=doc.get("account_budget"),
            app_budget=doc.get("app_budget"),
            throttle_code=doc.get("throttle_code"),
            usage_headers=doc.get("usage_headers"),
        )
        return self.limiter.settings()

    def _control_truth(self, account_id: str, edge: str | None, query: str) -> object:
        if edge is None:
            return self.account(account_id)
        if edge == "insights":
            return {"data": self.insights.truth(account_id, dict(parse_qsl(query)))}
        if edge == "files":  # the files behind the account's image and thumbnail URLs (files.py)
            files = self.asset_files(account_id)
            return {
                "data": [
                    {"url": url, "sha256": hashlib.sha256(content).hexdigest(), "size": len(content), "mime_type": mime}
                    for url, (content, mime) in files.items()
                ]
            }
        qs = dict(parse_qsl(query))
        statuses = None
        if "effective_status" in qs:
            statuses = json.loads(qs["effective_status"])
            if not isinstance(statuses, list):
                raise ValueError("effective_status must be a JSON list")
        return {"data": self.visible(edge, account_id, statuses)}

    def _control_mutate(self, doc: dict[str, Any]) -> MutationResult:
        _only_keys(doc, {"account_id", "edge", "update", "create", "delete", "update_ids", "delete_ids"})
        edge = doc.get("edge", "ads")
        if not isinstance(edge, str):
            raise TypeError('edge must be a string such as "campaigns"')
        if "account_id" not in doc:
            raise ValueError("account_id is required")
        counts: dict[str, int] = {}
        for key in ("update", "create", "delete"):
            value = doc.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{key} must be an integer")
            counts[key] = value
        ids: dict[str, list[str]] = {}
        for key in ("update_ids", "delete_ids"):
            value = doc.get(key, [])
            if not isinstance(value, list):
                raise TypeError(f"{key} must be a list of object ids")
            ids[key] = [str(v) for v in value]
        return self.mutate(
            str(doc["account_id"]),
            edge=edge,
            update=counts["update"],
            create=counts["create"],
            delete=counts["delete"],
            update_ids=ids["update_ids"],
            delete_ids=ids["delete_ids"],
        )


@overload
def _number(doc: dict[str, Any], key: str, default: float) -> float: ...
@overload
def _number(doc: dict[str, Any], key: str, default: None) -> float | None: ...
def _number(doc: dict[str, Any], key: str, default: float | None) -> float | None:
    """A JSON number from a control body (booleans refused: JSON true is not 1 here)."""
    if key not in doc:
        return default
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{key} must be a number")
    return float(value)


def _only_keys(doc: dict[str, Any], allowed: set[str]) -> None:
    """Refuse unknown keys: a typo in a control request must not be silently ignored."""
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")


class _HTTPServer(ThreadingHTTPServer):
    """Threading server that knows its app; a deeper accept queue for benchmarks with many clients."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: SandboxApp, tls: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.tls = tls
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept a connection; with TLS, its handshake happens in the handler's thread, on first read.

        Wrapping lazily keeps a client that never finishes its handshake from stalling every other one.
        """
        sock, address = self.socket.accept()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        """Close a connection, then count it closed (tests wait on the count, not on timers)."""
        super().shutdown_request(request)
        self.app.stats.connection_closed()

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up (after a timeout, say) is normal here: no traceback, one line otherwise."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, ssl.SSLError)):
            return
        print(f"sandbox: error serving {client_address}: {exc!r}", file=sys.stderr)


class _Handler(BaseHTTPRequestHandler):
    """Moves bytes: reads the request, writes the app's reply, acts out transport faults."""

    protocol_version = "HTTP/1.1"  # keep-alive, so a client's session reuses its connection
    # A page goes out in several writes (head + first chunk, then the other chunks); with Nagle on, a
    # small last write waits for the client's delayed ACK (40 ms a page on Linux), which would make the
    # sandbox, not the client, the bottleneck.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        """Time idle connections out after ``idle_timeout_seconds`` (the handler then closes them)."""
        super().setup()
        self.connection.settimeout(self.server.app.config.idle_timeout_seconds)
        self.server.app.stats.connection_opened()

    def version_string(self) -> str:
        """The ``Server`` header."""
        return "tap-meta-ads-sandbox"

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header comes from the virtual clock, so advancing it is visible to clients."""
        return email.utils.formatdate(self.server.app.clock.now() if timestamp is None else timestamp, usegmt=True)

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: an access log would print tokens sent in URLs."""

    def do_GET(self) -> None:
        """Serve a GET."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """Serve a POST."""
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        """Serve a DELETE (Graph API only; answered with an error)."""
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        app = self.server.app
        length_header = self.headers.get("Content-Length") or "0"
        if not length_header.isdigit():
            self.close_connection = True  # the body's end is unknown, so the connection cannot be reused
            self._send(control_error("Content-Length must be a non-negative integer"))
            return
        body = self.rfile.read(int(length_header)) if int(length_header) > 0 else b""
        try:
            if self.path.startswith("/_sandbox/"):
                reply = app.control(method, self.path, body)
            elif self.path.startswith(CDN_PREFIX):
                reply = app.cdn(self.path, {k.lower(): v for k, v in self.headers.items()})
            else:
                headers = {k.lower(): v for k, v in self.headers.items()}
                host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
                reply = app.graph(method, self.path, headers, host, body)
        except Exception as exc:  # noqa: BLE001 - the server must answer, never drop the connection
            print(f"sandbox: internal error on {method} {self.path.split('?')[0]}: {exc!r}", file=sys.stderr)
            reply = json_reply(500, {"error": {"message": f"sandbox internal error: {exc}", "code": 1}})
        if reply.wait_seconds and app.stop_event.wait(reply.wait_seconds):
            self.close_connection = True
            return
        if app.config.gzip and _accepts_gzip(self.headers.get("Accept-Encoding")):
            reply.chunks = [gzip.compress(reply.body)]
            reply.headers["Content-Encoding"] = "gzip"
        self._send(reply)

    def _head(self, reply: Reply) -> bytes:
        """The status line and headers, as ``send_response``/``send_header`` write them, in one buffer."""
        reason = self.responses[reply.status][0] if reply.status in self.responses else ""
        lines = [
            f"{self.protocol_version} {reply.status} {reason}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {reply.content_type}",
            f"Content-Length: {reply.length}",
            *(f"{name}: {value}" for name, value in reply.headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send(self, reply: Reply) -> None:
        """Write the head and the first body chunk in one write, then the other chunks (or act out a fault).

        Why one write: with Nagle off every write is its own system call and TCP segment, and the head alone
        is a few hundred bytes.
        """
        head = self._head(reply)
        if reply.action == "reset":
            self.wfile.write(head + reply.body[: reply.length // 2])
            self.wfile.flush()
            # SO_LINGER 0 turns close() into a TCP RST: the client sees "connection reset", not EOF.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if reply.action == "truncated":
            self.wfile.write(head + reply.body[: reply.length // 2])
            self.close_connection = True
            return
        first, *rest = reply.chunks
        self.wfile.write(head + first)
        for chunk in rest:
            self.wfile.write(chunk)


def _accepts_gzip(header: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header accepts gzip: named, with a weight above 0 (RFC 9110, 12.5.3)."""
    for item in (header or "").split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip"):
            _, _, weight = params.replace(" ", "").lower().partition("q=")
            try:
                return not weight or float(weight) > 0
            except ValueError:
                return False
    return False


class SandboxServer:
    """The sandbox on a real socket: a context manager for tests, or ``serve_forever`` for the CLI.

    With ``tls`` (a server-side ``ssl.SSLContext``) it speaks HTTPS, as Meta does, so a client's
    certificate checks can be shown against it.
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.app = SandboxApp(config or SandboxConfig())
        self._httpd = _HTTPServer((host, port), self.app, tls)
        self._thread: threading.Thread | None = None
        self.app.store.cdn.base = self.url  # image and thumbnail URLs point at this server's /_cdn/

    @property
    def host(self) -> str:
        """The address the server is bound to."""
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked)."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``; point the tap's ``api_url`` here."""
        scheme = "https" if self._httpd.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        """Serve in a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="sandbox", daemon=True
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`stop` or KeyboardInterrupt."""
        self._httpd.serve_forever()

    def stop(self) -> None:
        """Stop serving and release the port; wakes handlers waiting on a slow fault."""
        self.app.stop_event.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> SandboxServer:
        """Start on entering the block."""
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop on leaving it."""
        self.stop()

    def stats(self) -> dict[str, Any]:
        """Same document as ``GET /_sandbox/stats``."""
        return self.app.stats.snapshot()

    def wait_connections_closed(self, count: int, timeout: float = 10.0) -> bool:
        """Block until the server has closed ``count`` connections since the stats were reset."""
        return self.app.stats.wait_connections_closed(count, timeout)

    def reset_stats(self) -> None:
        """Same as ``POST /_sandbox/stats/reset``."""
        self.app.stats.reset()

    def mutate(
        self,
        account_id: str,
        *,
        edge: str = "ads",
        update: int = 0,
        create: int = 0,
        delete: int = 0,
        update_ids: list[str] | tuple[str, ...] = (),
        delete_ids: list[str] | tuple[str, ...] = (),
    ) -> dict[str, list[str]]:
        """Same as ``POST /_sandbox/mutate``: ``{"updated": [...], "created": [...], "deleted": [...]}``."""
        return self.app.mutate(
            account_id,
            edge=edge,
            update=update,
            create=create,
            delete=delete,
            update_ids=update_ids,
            delete_ids=delete_ids,
        ).as_dict()

    def advance_clock(self, seconds: float) -> float:
        """Move the virtual clock forward; returns the new virtual now (epoch seconds)."""
        return self.app.clock.advance(seconds)

    def now(self) -> float:
        """The virtual clock."""
        return self.app.clock.now()

    def set_faults(self, plan: FaultPlan) -> None:
        """Replace the fault plan (request numbering restarts at 1)."""
        self.app.set_faults(plan)

    def configure(
        self,
        *,
        window_seconds: float | None = None,
        account_budget: int | None = None,
        app_budget: int | None = None,
        throttle_code: str | None = None,
        usage_headers: bool | None = None,
    ) -> dict[str, object]:
        """Change rate-limit knobs at runtime, as ``POST /_sandbox/config`` does."""
        self.app.limiter.configure(
            window_seconds=window_seconds,
            account_budget=account_budget,
            app_budget=app_budget,
            throttle_code=throttle_code,
            usage_headers=usage_headers,
        )
        return self.app.limiter.settings()

    def visible_ads(
        self, account_id: str, effective_statuses: list[str] | tuple[str, ...] | None = None
    ) -> list[dict[str, Any]]:
        """Ground truth: full ads visible under those statuses (default: Meta's default visibility)."""
        return self.app.visible_ads(account_id, effective_statuses)

    def insights_truth(self, account_id: str, **params: object) -> list[dict[str, Any]]:
        """Ground truth of an insights report, as ``GET /_sandbox/truth/act_{id}/insights?...``.

        ``params`` are the report's parameters as a client sends them (``level``, ``fields``, ``breakdowns``,
        ``time_range``, ``time_increment``, ...); lists and dicts may be given as Python values.
        """
        flat = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
        return self.app.insights.truth(account_id, flat)

    def configure_insights(self, **doc: object) -> dict[str, Any]:
        """Same as ``POST /_sandbox/insights``: report-run knobs and the fates of the next runs."""
        return self.app.insights.control(doc)

    def insights_runs(self) -> list[dict[str, Any]]:
        """Every report run submitted so far (``GET /_sandbox/insights``'s ``runs``)."""
        return list(self.app.insights.describe()["runs"])

    def visible(
        self, edge: str, account_id: str, statuses: list[str] | tuple[str, ...] | None = None
    ) -> list[dict[str, Any]]:
        """Ground truth of any edge (see :meth:`SandboxApp.visible`)."""
        return self.app.visible(edge, account_id, statuses)

    def account(self, account_id: str) -> dict[str, Any]:
        """Ground truth: the ad account node (``GET /act_{id}``) with every field."""
        return self.app.account(account_id)

    def asset_files(self, account_id: str) -> dict[str, tuple[bytes, str]]:
        """Ground truth: the files of an account's images and creatives, by URL without query string."""
        return self.app.asset_files(account_id)

    def set_token(self, token: str, **profile: object) -> None:
        """Add or replace a token with a profile (``tokens.TokenProfile`` fields), as ``POST /_sandbox/tokens``."""
        self.app.tokens.set(token, TokenProfile.from_mapping(profile), self.app.clock.now())

    def fail_cdn(self, *statuses: int) -> None:
        """The CDN's next answers are these HTTP statuses (then files again)."""
        self.app.cdn_faults[:] = list(statuses)

    def cdn_requests(self) -> list[dict[str, Any]]:
        """Every request the CDN answered: path, status, whether it carried an Authorization header."""
        return list(self.app.cdn_log)
