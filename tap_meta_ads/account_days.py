"""The ad account's days: Meta cuts insights rows in the account's time zone, so the tap counts days there too.

``date_start`` of an insights row is a day of the ad account's time zone (``timezone_name`` on the
account, e.g. ``America/Los_Angeles``), not of UTC. A tap that computes "today" in UTC asks an account at
UTC-11 for a day that has not begun there, and misses the whole "today" of an account at UTC+14 (which
starts while UTC is still on yesterday). So each account's time zone is read once per run
(``GET /act_{id}?fields=timezone_name,timezone_offset_hours_utc``, one call per account, cached for the
run by :class:`AccountZones`) and "today", the last day, ``end_date``, window boundaries and the
37-month floor are all that account's days. Bookmarks stay plain dates: they are the account's days.

Tests need a fixed "now" to show this at any hour: ``META_ADS_TEST_NOW`` (an ISO 8601 instant with an
offset, for tests only; never set it in production) replaces the machine's clock for the tap's day
arithmetic. The sandbox's clock is moved to the same instant by the tests.
"""

from __future__ import annotations

import datetime
import os
import threading
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: Tests only: the instant the tap takes as "now" for the accounts' days (ISO 8601 with an offset).
NOW_ENV = "META_ADS_TEST_NOW"


def utc_now() -> datetime.datetime:
    """The current instant, or the one ``META_ADS_TEST_NOW`` names (tests only)."""
    fixed = os.environ.get(NOW_ENV)
    if fixed:
        moment = datetime.datetime.fromisoformat(fixed)
        if moment.tzinfo is None:
            msg = f"{NOW_ENV}: {fixed!r} needs a UTC offset, such as 2026-12-05T10:30:00+00:00"
            raise ValueError(msg)
        return moment.astimezone(datetime.timezone.utc)
    return datetime.datetime.now(datetime.timezone.utc)


@dataclass(frozen=True)
class AccountZone:
    """An ad account's time zone, as Meta cuts its insights days."""

    account_id: str
    name: str
    tz: datetime.tzinfo

    def today(self) -> datetime.date:
        """The account's current day: the last day Meta can have insights rows for."""
        return utc_now().astimezone(self.tz).date()

    @classmethod
    def from_account(cls, account_id: str, node: Mapping[str, Any]) -> AccountZone:
        """Read ``timezone_name`` (an IANA name), or else ``timezone_offset_hours_utc``; UTC when Meta gives neither."""
        name = node.get("timezone_name")
        if isinstance(name, str) and name:
            try:
                return cls(account_id, name, zoneinfo.ZoneInfo(name))
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                pass  # a name this machine's time zone database lacks: the offset Meta gives is as good today
        offset = node.get("timezone_offset_hours_utc")
        if isinstance(offset, (int, float)) and not isinstance(offset, bool):
            delta = datetime.timedelta(hours=float(offset))
            return cls(account_id, str(name or f"UTC{float(offset):+g}"), datetime.timezone(delta))
        return cls(account_id, "UTC", datetime.timezone.utc)


class AccountZones:
    """Each account's time zone, read once per run and kept for the run (every insights stream shares it)."""

    FIELDS = "timezone_name,timezone_offset_hours_utc"

    def __init__(self) -> None:
        self._zones: dict[str, AccountZone] = {}
        self._lock = threading.Lock()

    def get(self, account_id: str, read_account: Callable[[], Mapping[str, Any]]) -> AccountZone:
        """The account's zone; ``read_account`` (``GET /act_{id}`` with :attr:`FIELDS`) runs on the first ask only."""
        with self._lock:
            zone = self._zones.get(account_id)
        if zone is None:
            zone = AccountZone.from_account(account_id, read_account())
            with self._lock:
                zone = self._zones.setdefault(account_id, zone)
        return zone
