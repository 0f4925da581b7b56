"""The table of Graph API edges the sandbox serves.

Why a table: every edge of an ad account (ads, campaigns, ad sets, creatives, images, videos, custom
conversions) is paged, filtered and projected the same way, so adding one is a collection class (``data.py``,
``objects.py``) with the members of :class:`Collection` plus one row here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Protocol

from tap_meta_ads_sandbox.store import EDGE_NAMES, DataStore


class Collection(Protocol):
    """What the pager needs from the objects of one edge of one account, addressed by position."""

    node_type: str
    filter_prefix: str
    fields: tuple[str, ...]
    #: ``effective_status`` when the edge takes that parameter, else ``None`` (then it is refused).
    status_param: str | None
    #: Fields the edge's ``filtering`` accepts (without prefix); empty when it takes no ``filtering``.
    filter_fields: frozenset[str]
    #: Every status value, and the ones listed when none is asked for.
    statuses: tuple[str, ...]
    default_visible: frozenset[str]
    #: Whether the edge takes ``since``/``until``; whether some objects fail with some fields (``refusal``).
    time_params: bool
    may_refuse: bool
    account_id: str

    def refusal(self, index: int, fields: tuple[str, ...]) -> Exception | None:
        """Meta's error for object ``index`` asked with ``fields``, or ``None``."""
        ...

    @property
    def count(self) -> int:
        """Number of positions (objects ever created, visible or not)."""
        ...

    def effective_status(self, index: int) -> str:
        """Current effective status of the object at ``index``."""
        ...

    def updated_epoch(self, index: int) -> int:
        """Current ``updated_time`` of the object at ``index``, as a Unix epoch."""
        ...

    def row(self, index: int) -> dict[str, Any]:
        """The object with every field it has a value for."""
        ...

    def members(self, index: int) -> dict[str, str]:
        """The same object as ``{field: JSON member text}`` (``""`` when absent), which pages are joined from."""
        ...


def member_getter(fields: tuple[str, ...]) -> Callable[[dict[str, str]], tuple[str, ...]]:
    """Picks the asked fields' member texts out of :meth:`Collection.members`, in the asked order.

    Built once per page: ``itemgetter`` does the per-row lookups in C, and ``",".join(filter(None, ...))``
    then drops the fields an object has no value for, so projecting a row costs no Python loop per field.
    """
    if len(fields) == 1:  # itemgetter with one key returns the value itself, not a 1-tuple
        (name,) = fields
        return lambda members: (members[name],)
    return itemgetter(*fields)


@dataclass(frozen=True)
class Edge:
    """One edge of the ad account node: its name in the URL and where its objects come from."""

    name: str
    collection: Callable[[DataStore, str], Collection | None]
    #: The edge's own page budget in bytes (``--page-budget-bytes`` applies on top): a page estimated larger
    #: fails with "Please reduce the amount of data". Meta answers so most often on ``adcreatives``, whose
    #: rows carry story specs and asset feeds; 100 KB lets pages of 50 creatives through, not 100.
    page_budget_bytes: int | None = None


def _edge(name: str, page_budget_bytes: int | None = None) -> Edge:
    return Edge(name, lambda store, account_id: store.edges[name].get(account_id), page_budget_bytes)


EDGES: dict[str, Edge] = {name: _edge(name) for name in EDGE_NAMES}
EDGES["adcreatives"] = _edge("adcreatives", page_budget_bytes=100_000)
