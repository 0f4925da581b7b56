"""Edge requests as Meta reads them: ``fields``, ``limit``, ``filtering``, ``effective_status``, cursors.

Cursors are opaque to the client (URL-safe base64 of a small JSON: edge, account, position, page number,
issue time) and checked on the way back: a cursor the sandbox did not issue for this edge and account is
Meta's code 2642, one older than ``cursor_ttl_seconds`` is the same code with a subcode (see errors.py).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from collections.abc import Callable
from dataclasses import dataclass

from tap_meta_ads_sandbox.edges import Collection
from tap_meta_ads_sandbox.errors import expired_cursor, invalid_cursor, invalid_parameter

_TIME_OPERATORS = ("GREATER_THAN", "LESS_THAN", "GREATER_THAN_OR_EQUAL", "LESS_THAN_OR_EQUAL")


@dataclass(frozen=True)
class Cursor:
    """A decoded cursor: the position it points at and the pagination run's page number."""

    edge: str
    account_id: str
    position: int
    page: int
    issued: int

    def encode(self) -> str:
        """Opaque text for ``paging.cursors``; URL-safe so it survives any client's URL handling."""
        raw = json.dumps(
            {"e": self.edge, "a": self.account_id, "p": self.position, "n": self.page, "t": self.issued},
            separators=(",", ":"),
        ).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, edge: str, account_id: str, now: float, ttl: float | None) -> Cursor:
        """Decode and check a cursor sent back by a client; a GraphError (2642) when it is not valid."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            doc = json.loads(raw)
            cursor = cls(edge=doc["e"], account_id=doc["a"], position=doc["p"], page=doc["n"], issued=doc["t"])
        except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
            raise invalid_cursor() from exc
        ints = (cursor.position, cursor.page, cursor.issued)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
            raise invalid_cursor()
        if cursor.edge != edge or cursor.account_id != account_id or cursor.position < -1 or cursor.page < 1:
            raise invalid_cursor()
        if ttl is not None and now - cursor.issued > ttl:
            raise expired_cursor()
        return cursor


@dataclass(frozen=True)
class EdgeQuery:
    """A parsed edge request: which fields, how many rows, which objects."""

    fields: tuple[str, ...]
    limit: int
    statuses: frozenset[str]
    updated_after: int | None
    updated_before: int | None
    after: Cursor | None
    before: Cursor | None

    def matcher(self, coll: Collection) -> Callable[[int], bool]:
        """A predicate over positions; the common unfiltered case avoids reading ``updated_time``."""
        statuses = self.statuses
        status_of = coll.effective_status
        if self.updated_after is None and self.updated_before is None:
            return lambda i: status_of(i) in statuses
        lo = self.updated_after if self.updated_after is not None else -(2**62)
        hi = self.updated_before if self.updated_before is not None else 2**62
        updated_of = coll.updated_epoch
        return lambda i: status_of(i) in statuses and lo < updated_of(i) < hi


def parse_fields(text: str | None, coll: Collection) -> tuple[str, ...]:
    """``fields=a,b`` -> those names in order, without duplicates; only ``id`` when absent."""
    if text is None:
        return ("id",)
    names: list[str] = []
    known = coll.fields
    for raw in text.split(","):
        name = raw.strip()
        if not name:
            continue
        if "{" in name or "}" in name or "." in name:
            raise invalid_parameter(f"(#100) Nested field expansion is not supported by the sandbox: ({name})")
        if name not in known:
            raise invalid_parameter(
                f"(#100) Tried accessing nonexisting field ({name}) on node type ({coll.node_type})"
            )
        if name not in names:
            names.append(name)
    return tuple(names) if names else ("id",)


def parse_limit(text: str | None, max_limit: int, default: int) -> int:
    """``limit``: a positive integer, capped silently at ``max_limit`` as Meta caps per edge."""
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise invalid_parameter("(#100) Param limit must be a positive integer")
    return min(value, max_limit)


def _status_list(value: object, what: str, known: tuple[str, ...]) -> frozenset[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise invalid_parameter(f"(#100) {what} must be an array of strings")
    bad = [v for v in items if v not in known]
    if bad:
        allowed = ", ".join(known)
        raise invalid_parameter(f"(#100) {what} must be one of {{{allowed}}}, got {bad[0]}")
    return frozenset(items)


def _epoch(value: object, field: str) -> int:
    if isinstance(value, bool):
        raise invalid_parameter(f"(#100) Filtering value for {field} must be a Unix timestamp")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise invalid_parameter(f"(#100) Filtering value for {field} must be a Unix timestamp")


def _time_param(value: str, name: str) -> int:
    """``since``/``until``: a Unix time, or a ``YYYY-MM-DD`` date (UTC midnight), as Meta's strtotime takes."""
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        raise invalid_parameter(f"(#100) param {name} must be a Unix timestamp or a date") from None
    return int(datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.timezone.utc).timestamp())


def _json_param(params: dict[str, str], name: str) -> object:
    try:
        return json.loads(params[name])
    except ValueError as exc:
        raise invalid_parameter(f"(#100) param {name} must be an array.") from exc


@dataclass
class _Filters:
    """The ``filtering`` clauses folded into status sets and an open ``updated_time`` interval."""

    include: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()
    gt: int | None = None
    lt: int | None = None

    def add(self, clause: object, coll: Collection) -> None:
        """Fold one ``{"field", "operator", "value"}`` clause in; code 100 for anything the edge does not take."""
        if not isinstance(clause, dict) or not {"field", "operator", "value"} <= set(clause):
            raise invalid_parameter("(#100) param filtering[] must be an object with keys field, operator and value")
        field, op, value = clause["field"], clause["operator"], clause["value"]
        name = field.removeprefix(coll.filter_prefix + ".") if isinstance(field, str) else ""
        known = coll.statuses
        if name not in coll.filter_fields:
            raise invalid_parameter(f"(#100) Filtering field {field!r} with operation {op!r} is not supported")
        if name == "updated_time" and op in _TIME_OPERATORS:
            epoch = _epoch(value, field)
            if op in ("GREATER_THAN", "GREATER_THAN_OR_EQUAL"):
                bound = epoch - 1 if op == "GREATER_THAN_OR_EQUAL" else epoch
                self.gt = bound if self.gt is None else max(self.gt, bound)
            else:
                bound = epoch + 1 if op == "LESS_THAN_OR_EQUAL" else epoch
                self.lt = bound if self.lt is None else min(self.lt, bound)
        elif name == "effective_status" and op in ("IN", "EQUAL"):
            wanted = _status_list(value, f"Filtering value for {field}", known)
            self.include = wanted if self.include is None else self.include & wanted
        elif name == "effective_status" and op == "NOT_IN":
            self.exclude |= _status_list(value, f"Filtering value for {field}", known)
        else:
            raise invalid_parameter(f"(#100) Filtering field {field!r} with operation {op!r} is not supported")

    def add_time_range(self, params: dict[str, str], coll: Collection, edge: str) -> None:
        """Fold ``since``/``until`` in (both ends inclusive: Meta's reference does not say); code 100 elsewhere."""
        for name in ("since", "until"):
            if name not in params:
                continue
            if not coll.time_params:
                raise invalid_parameter(f"(#100) param {name} is not supported on edge {edge}")
            epoch = _time_param(params[name], name)
            if name == "since":  # the matcher's interval is open
                self.gt = epoch - 1 if self.gt is None else max(self.gt, epoch - 1)
            else:
                self.lt = epoch + 1 if self.lt is None else min(self.lt, epoch + 1)


def parse_query(
    params: dict[str, str],
    coll: Collection,
    *,
    edge: str,
    account_id: str,
    now: float,
    max_limit: int,
    default_limit: int,
    cursor_ttl: float | None,
) -> EdgeQuery:
    """Read every paging and selection param of an edge request; GraphError for anything malformed."""
    fields = parse_fields(params.get("fields"), coll)
    limit = parse_limit(params.get("limit"), max_limit, default_limit)
    statuses: frozenset[str] | None = None
    if "effective_status" in params:
        if coll.status_param != "effective_status":
            raise invalid_parameter(f"(#100) param effective_status is not supported on edge {edge}")
        statuses = _status_list(_json_param(params, "effective_status"), "param effective_status", coll.statuses)
    filters = _Filters()
    if "filtering" in params:
        if not coll.filter_fields:
            raise invalid_parameter(f"(#100) param filtering is not supported on edge {edge}")
        clauses = _json_param(params, "filtering")
        if not isinstance(clauses, list):
            raise invalid_parameter("(#100) param filtering must be an array.")
        for clause in clauses:
            filters.add(clause, coll)
    filters.add_time_range(params, coll, edge)
    # The effective_status param or an IN clause lifts Meta's default (no ARCHIVED, no DELETED).
    if statuses is None:
        statuses = frozenset(coll.statuses) if filters.include is not None else coll.default_visible
    if filters.include is not None:
        statuses &= filters.include
    statuses -= filters.exclude
    after = before = None
    if params.get("after"):
        after = Cursor.decode(params["after"], edge, account_id, now, cursor_ttl)
    elif params.get("before"):
        before = Cursor.decode(params["before"], edge, account_id, now, cursor_ttl)
    return EdgeQuery(fields, limit, statuses, filters.gt, filters.lt, after, before)


@dataclass
class Page:
    """The positions one request returns, and where the pagination run goes next."""

    positions: list[int]
    page: int
    has_next: bool
    has_previous: bool
    next_position: int  # the "after" position for the next page (last returned, or unchanged when empty)


def select_page(coll: Collection, query: EdgeQuery, empty_page_every: int) -> Page:
    """Walk the edge from the cursor and pick up to ``limit`` matching positions, in edge order."""
    match = query.matcher(coll)
    count = coll.count
    limit = query.limit
    if query.before is not None:
        page_no = max(1, query.before.page - 1)
        picked: list[int] = []
        i = query.before.position - 1
        while i >= 0 and len(picked) < limit:
            if match(i):
                picked.append(i)
            i -= 1
        picked.reverse()
        has_previous = any(match(j) for j in range(i, -1, -1))
        last = picked[-1] if picked else query.before.position - 1
        return Page(picked, page_no, has_next=True, has_previous=has_previous, next_position=last)
    start = query.after.position + 1 if query.after is not None else 0
    page_no = query.after.page + 1 if query.after is not None else 1
    if empty_page_every and page_no % empty_page_every == 0:
        return Page([], page_no, has_next=True, has_previous=start > 0, next_position=start - 1)
    picked = []
    i = start
    while i < count and len(picked) < limit:
        if match(i):
            picked.append(i)
        i += 1
    has_next = False
    while i < count:
        if match(i):
            has_next = True
            break
        i += 1
    last = picked[-1] if picked else start - 1
    return Page(picked, page_no, has_next=has_next, has_previous=start > 0, next_position=last)
