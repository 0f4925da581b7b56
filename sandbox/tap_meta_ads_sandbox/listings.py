"""Ad account listings: ``GET /me/adaccounts`` and a business's ``owned_ad_accounts`` / ``client_ad_accounts``.

What a client must cope with, as Meta serves it (Meta's AdAccount and Business references; the project's
notes, "Accounts and tokens"):

- the token's accounts (``/me/adaccounts``) and a business's accounts (owned ones, and the clients' accounts
  it was given access to) are separate listings, and an account can appear in several of them;
- each listing pages by cursor (default 25 rows), and its ``paging.next`` is a full URL that repeats the
  access token as ``access_token=...``: a client that follows ``next`` verbatim puts the token in its own
  logs, exception texts and proxies (seen in public connectors' issue threads; the sandbox counts any
  request carrying ``access_token`` in its URL, see ``stats.py``);
- ``account_status`` is Meta's code (1 ACTIVE, 2 DISABLED, 3 UNSETTLED, 7 PENDING_RISK_REVIEW,
  8 PENDING_SETTLEMENT, 9 IN_GRACE_PERIOD, 100 PENDING_CLOSURE, 101 CLOSED), so a client filters on it;
- a business the token cannot see is Meta's ``(#100)`` subcode 33, like any unknown object.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from tap_meta_ads_sandbox.errors import invalid_cursor, invalid_parameter, unsupported_get

#: Meta's default page size for a listing without ``limit``.
LISTING_DEFAULT_LIMIT = 25
LISTING_MAX_LIMIT = 500
BUSINESS_EDGES = ("owned_ad_accounts", "client_ad_accounts")
LISTING_FIELDS = ("id", "account_id", "name", "account_status")


def is_listing(node: str, edge: str | None, businesses: Mapping[str, Any]) -> bool:
    """Whether ``GET /{node}/{edge}`` is an account listing (``me`` or a business id with a listing edge)."""
    if node == "me":
        return edge == "adaccounts"
    return edge in BUSINESS_EDGES and (node in businesses or node.isdigit())


def listing_ids(
    node: str,
    edge: str,
    *,
    configured: Sequence[str],
    me_accounts: Sequence[str] | None,
    businesses: Mapping[str, Mapping[str, Sequence[str]]],
) -> list[str]:
    """The account ids a listing holds, in the order Meta would page them."""
    if node == "me":
        return list(configured if me_accounts is None else me_accounts)
    business = businesses.get(node)
    if business is None:
        raise unsupported_get(node)
    return list(business.get("owned" if edge == "owned_ad_accounts" else "client", ()))


def listing_page(
    ids: list[str],
    *,
    params: Mapping[str, str],
    pairs: Sequence[tuple[str, str]],
    row_of: Any,  # noqa: ANN401 - Callable[[str], dict[str, Any]]: the account's fields, as the node serves them
    url: str,
    token: str,
) -> dict[str, Any]:
    """One page of a listing: rows projected to ``fields``, cursors, and a ``next`` that repeats the token."""
    key = url.rsplit("/", 2)[-2] + "/" + url.rsplit("/", 1)[-1]
    try:
        limit = int(params.get("limit", LISTING_DEFAULT_LIMIT))
    except ValueError:
        raise invalid_parameter("(#100) Param limit must be an integer") from None
    limit = max(1, min(limit, LISTING_MAX_LIMIT))
    start = _decode(params["after"], key) if params.get("after") else 0
    fields = [f for f in (params.get("fields") or "id").split(",") if f]
    unknown = [f for f in fields if f not in LISTING_FIELDS]
    if unknown:
        raise invalid_parameter(f"(#100) Tried accessing nonexisting field ({unknown[0]}) on node type (AdAccount)")
    chunk = ids[start : start + limit]
    rows = []
    for account_id in chunk:
        node = row_of(account_id)
        rows.append({"id": node["id"], **{f: node[f] for f in fields if f != "id"}})
    doc: dict[str, Any] = {"data": rows}
    end = start + len(chunk)
    if chunk:
        doc["paging"] = {"cursors": {"before": _encode(key, start), "after": _encode(key, end)}}
        if end < len(ids):
            # Meta's ``next`` repeats every parameter and the access token, whichever way it was sent.
            query = [(k, v) for k, v in pairs if k not in ("after", "before", "access_token")]
            query += [("access_token", token), ("after", _encode(key, end))]
            doc["paging"]["next"] = f"{url}?{urlencode(query)}"
    return doc


def _encode(key: str, offset: int) -> str:
    raw = json.dumps({"l": key, "o": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(text: str, key: str) -> int:
    try:
        doc = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        offset = doc["o"]
        same = doc["l"] == key
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise invalid_cursor() from None
    if not same or not isinstance(offset, int) or offset < 0:
        raise invalid_cursor()
    return offset
