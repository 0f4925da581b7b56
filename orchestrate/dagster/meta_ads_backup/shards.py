"""Which shard backs up which ad account: a stable hash of the account id, nothing else.

Each shard is one `meltano run --state-id-suffix=shard-<i>`, so its state id holds the bookmarks of its
accounts. An account's shard must therefore never change while the shard count stays the same: adding or
removing an account may not move any other account (its bookmark would stay behind in the old shard's
state and the account would start again from `start_date` in the new one). That rules out dealing the
sorted account list round-robin; the shard is a function of the account id alone.

The function is rendezvous (highest-random-weight) hashing: every shard draws a SHA-256 weight for the
account and the highest weight wins. Beyond the rule above it also keeps changes of the shard count
small: going from N to N+1 shards moves only the accounts the new shard wins (about 1/(N+1) of them),
where `hash mod N` would move almost all. SHA-256 rather than Python's `hash()`, which is salted per
process. `act_123` and `123` are the same account and land in the same shard.

Standard library only: Dagster, an Airflow DAG or a shell script can all import this file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

SHARD_PREFIX = "shard-"


def canonical_account_id(account_id: str) -> str:
    """The account id without Meta's `act_` prefix: the form that is hashed."""
    text = str(account_id).strip()
    return text.removeprefix("act_")


def shard_of(account_id: str, shard_count: int) -> int:
    """The shard (0 .. shard_count-1) of one ad account."""
    if shard_count < 1:
        raise ValueError(f"the shard count must be at least 1, got {shard_count}")
    key = canonical_account_id(account_id)

    def weight(shard: int) -> bytes:
        return hashlib.sha256(f"{key}/{shard}".encode()).digest()

    return max(range(shard_count), key=weight)


@dataclass(frozen=True)
class Shard:
    """One shard of a backup: its index, its state id suffix and its ad accounts (as configured)."""

    index: int
    account_ids: tuple[str, ...]

    @property
    def name(self) -> str:
        """The state id suffix, e.g. `shard-2`; the state id is `<env>:tap-meta-ads-to-target-gcs:shard-2`."""
        return f"{SHARD_PREFIX}{self.index}"


def plan_shards(account_ids: Iterable[str], shard_count: int) -> list[Shard]:
    """Deal the accounts into shards; shards that get no account are left out (nothing to run).

    Raises ValueError on an empty list or on one account given twice (e.g. as `act_1` and `1`), which
    would be backed up twice.
    """
    ids = [str(a).strip() for a in account_ids]
    if not ids:
        raise ValueError("no ad accounts to back up: set the tap's account_ids (TAP_META_ADS_ACCOUNT_IDS)")
    seen: dict[str, str] = {}
    for account in ids:
        key = canonical_account_id(account)
        if not key.isdigit():
            raise ValueError(f"ad account id {account!r} is not act_<digits> or <digits>")
        if key in seen:
            raise ValueError(f"ad account {account!r} is listed twice (also as {seen[key]!r})")
        seen[key] = account
    by_shard: dict[int, list[str]] = {}
    for account in ids:
        by_shard.setdefault(shard_of(account, shard_count), []).append(account)
    return [Shard(index, tuple(sorted(accounts))) for index, accounts in sorted(by_shard.items())]
