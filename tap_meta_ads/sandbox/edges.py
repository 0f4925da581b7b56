"""The table of Graph API edges the sandbox serves.

Why a table: every edge of an ad account (ads now; campaigns, ad sets, ad creatives, insights later) is
paged, filtered and projected the same way, so adding one is a collection class in ``data.py`` with the
four members of :class:`Collection` plus one row here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tap_meta_ads.sandbox.data import DataStore


class Collection(Protocol):
    """What the pager needs from the objects of one edge of one account, addressed by position."""

    node_type: str
    filter_prefix: str
    fields: tuple[str, ...]

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

    def encoded(self, index: int) -> dict[str, str]:
        """The same object as ``{field: JSON text of the value}``, which pages are joined from."""
        ...


@dataclass(frozen=True)
class Edge:
    """One edge of the ad account node: its name in the URL and where its objects come from."""

    name: str
    collection: Callable[[DataStore, str], Collection | None]


EDGES: dict[str, Edge] = {
    "ads": Edge("ads", lambda store, account_id: store.ads.get(account_id)),
}
