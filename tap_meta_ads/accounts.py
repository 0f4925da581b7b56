"""Which ad accounts a run reads: the configured list, or the accounts the token and the businesses know.

Agencies hold tens to thousands of ad accounts and gain or lose some every week; a hand-kept
``account_ids`` list drifts from the business. Meta already knows the list: ``GET /me/adaccounts`` (every
account the token's user or system user can read) and, per business, ``GET /{business_id}/owned_ad_accounts``
and ``GET /{business_id}/client_ad_accounts`` (Meta's Business reference; the project's notes, "Accounts and
tokens"). So ``account_ids`` is optional:

- ``account_ids`` given: exactly those (in their order, duplicates dropped), minus ``exclude_account_ids``;
  no listing is read and no status filter applies (the user chose them);
- else ``business_ids`` given: the owned and client accounts of each business;
- else: the token's ``/me/adaccounts``.

Listed accounts are deduplicated (one account can be owned by one business and a client of another), sorted
by id (a stable order for logs, STATE and shards), kept when their ``account_status`` is one of
``account_statuses`` and not in ``exclude_account_ids``.

Why the default statuses are every status but CLOSED (101): a backup exists for what can still be lost.
A DISABLED (2) or UNSETTLED (3) account, one in a risk review, settlement or grace period (7, 8, 9), keeps
its campaigns, ads and insights readable and is exactly the account whose history an agency must keep;
one PENDING_CLOSURE (100) is the last chance to read it. A CLOSED account changes no more: the nights it
was open already saved it, and reading it again every night spends calls and risks its errors for
nothing (add 101 to read closed accounts once more).

Listings page by cursor and their ``paging.next`` repeats the access token in its URL: the tap never
follows ``next``; it sends the same request again with ``after`` (the token stays in the header). The
list is logged once, ids and names, never the token.
"""

from __future__ import annotations

import logging
import random
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import requests

from tap_meta_ads.errors import Action, GraphAPIError, GraphError, classify, parse_json_body, raise_for_error

#: Meta's ``account_status`` codes (AdAccount reference).
ACCOUNT_STATUSES = {
    1: "ACTIVE",
    2: "DISABLED",
    3: "UNSETTLED",
    7: "PENDING_RISK_REVIEW",
    8: "PENDING_SETTLEMENT",
    9: "IN_GRACE_PERIOD",
    100: "PENDING_CLOSURE",
    101: "CLOSED",
}
#: Every status but CLOSED: see the module docstring for why.
DEFAULT_ACCOUNT_STATUSES = (1, 2, 3, 7, 8, 9, 100)
#: Rows per listing page: accounts are small objects, and fewer calls start the run sooner.
LISTING_PAGE_SIZE = 200
LISTING_FIELDS = "account_id,name,account_status"
#: How many accounts the one log line names in full; more are counted.
LOGGED_NAMES = 200


@dataclass(frozen=True)
class AdAccount:
    """One ad account of the run: its bare id, and its name and status when a listing said them."""

    account_id: str
    name: str | None = None
    status: int | None = None

    def label(self) -> str:
        """``act_123 (Shop name, DISABLED)``, for log lines."""
        notes = [n for n in (self.name, ACCOUNT_STATUSES.get(self.status or 0)) if n]
        return f"act_{self.account_id}" + (f" ({', '.join(notes)})" if notes else "")


def account_id_of(value: str) -> str:
    """``act_123`` and ``123`` both mean account 123; the tap keeps the bare digits."""
    value = value.strip()
    return value[4:] if value.startswith("act_") else value


class _Cursors(msgspec.Struct):
    after: str | None = None


class _Paging(msgspec.Struct):
    cursors: _Cursors | None = None
    next: str | None = None


class _ListingRow(msgspec.Struct):
    account_id: str | None = None
    id: str | None = None
    name: str | None = None
    account_status: int | None = None


class _ListingPage(msgspec.Struct):
    data: list[_ListingRow]
    paging: _Paging | None = None


_DECODER = msgspec.json.Decoder(_ListingPage)


class AccountLister:
    """Reads the account listings of a run through the run's session, with the error table and retries."""

    def __init__(self, session: requests.Session, config: Mapping[str, Any], proof: str | None) -> None:
        self._session = session
        self._config = config
        self._base = f"{str(config['api_url']).rstrip('/')}/{config['api_version']}"
        self._proof = proof
        self._headers = {"Authorization": f"Bearer {config['access_token']}"}
        self.requests = 0

    def listing(self, path: str) -> Iterator[AdAccount]:
        """Every account of one listing (``me/adaccounts``, ``{business}/owned_ad_accounts``), page by page."""
        after: str | None = None
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = {"fields": LISTING_FIELDS, "limit": LISTING_PAGE_SIZE}
            if after:
                params["after"] = after
            if self._proof:
                params["appsecret_proof"] = self._proof
            page = self._page(path, params)
            for row in page.data:
                raw = row.account_id or (row.id or "")
                if raw:
                    yield AdAccount(account_id_of(raw), row.name, row.account_status)
            paging = page.paging
            after = paging.cursors.after if paging and paging.cursors else None
            # ``next`` only says whether there is more: it repeats the token, so it is never requested.
            if not (paging and paging.next and after) or after in seen:
                return
            seen.add(after)

    def _page(self, path: str, params: dict[str, Any]) -> _ListingPage:
        """One page, retried as the error table says (waits, transient faults); one line when it cannot be read."""
        tries = int(self._config.get("max_retries", 10)) + 1
        base = float(self._config.get("backoff_base_seconds", 5))
        cap = float(self._config.get("backoff_max_seconds", 900))
        url = f"{self._base}/{path}"
        for attempt in range(1, tries + 1):
            self.requests += 1
            try:
                response = self._session.get(
                    url, params=params, headers=self._headers, timeout=float(self._config["request_timeout_seconds"])
                )
            except requests.RequestException as exc:
                if attempt == tries:
                    host = urllib.parse.urlsplit(self._base).netloc.rpartition("@")[2]
                    msg = f"Listing ad accounts ({path}) failed: cannot reach {host} ({type(exc).__name__})"
                    raise GraphAPIError(msg) from None
                time.sleep(min(cap, base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                continue
            if response.ok:
                try:
                    return _DECODER.decode(response.content)
                except msgspec.DecodeError:
                    error = GraphError(response.status_code, message="a body that is not a listing page")
            else:
                error = GraphError.from_body(response.status_code, parse_json_body(response.text))
            action = classify(error)
            if action in (Action.WAIT, Action.RETRY) and attempt < tries:
                time.sleep(min(cap, base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                continue
            try:
                raise_for_error(error, None)
            except GraphAPIError as exc:
                raise GraphAPIError(f"Listing ad accounts ({path}): {exc}", error) from None
            except Exception:  # noqa: BLE001 - any other action: the listing cannot be read
                raise GraphAPIError(f"Listing ad accounts ({path}): {error.describe()}", error) from None
        raise AssertionError("unreachable")  # pragma: no cover


def listing_paths(config: Mapping[str, Any]) -> list[str]:
    """The listings to read: each business's owned and client accounts, or the token's own."""
    businesses = [str(b).strip() for b in config.get("business_ids") or []]
    if businesses:
        return [f"{b}/{edge}" for b in businesses for edge in ("owned_ad_accounts", "client_ad_accounts")]
    return ["me/adaccounts"]


def resolve(config: Mapping[str, Any], lister: AccountLister, logger: logging.Logger) -> list[AdAccount]:
    """The run's accounts (see the module docstring), logged once; a ``GraphAPIError`` line when there are none."""
    excluded = {account_id_of(str(a)) for a in config.get("exclude_account_ids") or []}
    configured = config.get("account_ids")
    if configured:
        ids = dict.fromkeys(account_id_of(str(a)) for a in configured)
        chosen = [AdAccount(a) for a in ids if a not in excluded]
        source, skipped = "account_ids", [AdAccount(a) for a in ids if a in excluded]
    else:
        statuses = set(config.get("account_statuses") or DEFAULT_ACCOUNT_STATUSES)
        paths = listing_paths(config)
        found: dict[str, AdAccount] = {}
        for path in paths:
            for account in lister.listing(path):
                found.setdefault(account.account_id, account)
        ordered = sorted(found.values(), key=lambda a: (len(a.account_id), a.account_id))
        chosen = [a for a in ordered if a.account_id not in excluded and (a.status is None or a.status in statuses)]
        skipped = [a for a in ordered if a not in chosen]
        names = ", ".join(f"{s} {ACCOUNT_STATUSES.get(s, '?')}" for s in sorted(statuses))
        source = f"{' + '.join(paths)} (account_statuses {names})"
    if not chosen:
        msg = f"No ad account to extract: {source} gives none"
        if skipped:
            msg += f" that is not excluded or filtered out ({len(skipped)} were)"
        raise GraphAPIError(msg + "; check account_ids, business_ids, account_statuses and exclude_account_ids")
    shown = "; ".join(a.label() for a in chosen[:LOGGED_NAMES])
    more = f"; and {len(chosen) - LOGGED_NAMES} more" if len(chosen) > LOGGED_NAMES else ""
    logger.info("Ad accounts: %d from %s: %s%s", len(chosen), source, shown, more)
    if skipped:
        logger.info(
            "Ad accounts left out (excluded, or a status not in account_statuses): %s",
            "; ".join(a.label() for a in skipped[:LOGGED_NAMES]),
        )
    return chosen
