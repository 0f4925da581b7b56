"""Reconciliation: checks, day by day, that an account's ad rows add up to the account's own totals.

The question a media buyer asks of an insights pipeline is whether its numbers match Ads Manager. Ads
Manager's account total includes every ad's delivery, deleted ads included, while Meta never serves a
deleted ad's rows through the account's insights edge (facebook/facebook-python-business-sdk#269), and
leaves archived ads' rows out of any report run without a status filter (airbytehq/airbyte#36998). When a
run extracts both ``ads_insights`` (one row per ad and day) and ``ads_insights_account`` (the account's
own daily totals), every day both covered is checked here: the ad rows' sums of ``spend``,
``impressions`` and ``clicks`` against the account's row. A day that differs beyond rounding is one
warning line naming the account, the day and the gap; the run summary (``monitor.py``) counts, per
account, the days checked, the days off and the total spend gap, so a user can alert on them.

"Beyond rounding": Meta rounds each row's spend to the cent, so the sum of ``n`` ad rows may differ from
the account's row by up to half a cent per row (and half a cent for the account's own row); counts
(impressions, clicks) are exact and must match exactly.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

#: The streams compared: the ad-level rows, and the account's own totals.
AD_STREAM = "ads_insights"
ACCOUNT_STREAM = "ads_insights_account"
#: The metrics compared (each only when both streams extracted it).
METRICS = ("spend", "impressions", "clicks")
HALF_CENT = Decimal("0.005")


@dataclass
class DayTotals:
    """One stream's sums for one account and day."""

    rows: int = 0
    sums: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(METRICS, Decimal(0)))


@dataclass
class AccountCheck:
    """One account's reconciliation: what the run summary reports."""

    days_checked: int = 0
    days_off: int = 0
    spend_gap: Decimal = Decimal(0)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready; the spend gap (account total minus the ads' sum) in the account's currency."""
        return {"days_checked": self.days_checked, "days_off": self.days_off, "spend_gap": float(self.spend_gap)}


class Reconciliation:
    """The two streams' daily sums per account, and the days each completed, as the run goes."""

    def __init__(self) -> None:
        self._totals: dict[str, dict[str, dict[str, DayTotals]]] = {s: {} for s in (AD_STREAM, ACCOUNT_STREAM)}
        self._covered: dict[str, dict[str, set[str]]] = {s: defaultdict(set) for s in (AD_STREAM, ACCOUNT_STREAM)}
        self._metrics: dict[str, set[str]] = {s: set() for s in (AD_STREAM, ACCOUNT_STREAM)}
        self._lock = threading.Lock()

    @staticmethod
    def compares(stream: str) -> bool:
        """Whether a stream's rows take part."""
        return stream in (AD_STREAM, ACCOUNT_STREAM)

    def add_rows(self, stream: str, account_id: str, rows: list[dict[str, Any]], metrics: set[str]) -> None:
        """Add rows of a completed report run (``metrics``: the ones the stream extracts)."""
        with self._lock:
            self._metrics[stream] |= metrics & set(METRICS)
            days = self._totals[stream].setdefault(account_id, {})
            names = [m for m in METRICS if m in metrics]
            for row in rows:  # metrics are numbers already (int, Decimal: metric_values.py), added as they are
                totals = days.get(row["date_start"])
                if totals is None:
                    totals = days[row["date_start"]] = DayTotals()
                totals.rows += 1
                sums = totals.sums
                for name in names:
                    value = row.get(name)
                    if value is not None:
                        sums[name] += value

    def cover(self, stream: str, account_id: str, since: datetime.date, until: datetime.date) -> None:
        """Days whose every row the stream has read (a whole window, all its parts)."""
        days = {(since + datetime.timedelta(days=n)).isoformat() for n in range((until - since).days + 1)}
        with self._lock:
            self._covered[stream][account_id] |= days

    def check(self, logger: logging.Logger) -> dict[str, AccountCheck]:
        """Compare every day both streams covered; one warning line per day off. Empty if one stream did not run."""
        metrics = [m for m in METRICS if m in self._metrics[AD_STREAM] & self._metrics[ACCOUNT_STREAM]]
        results: dict[str, AccountCheck] = {}
        for account_id, ad_days in sorted(self._covered[AD_STREAM].items()):
            days = sorted(ad_days & self._covered[ACCOUNT_STREAM].get(account_id, set()))
            if not days or not metrics:
                continue
            check = results[account_id] = AccountCheck()
            ads = self._totals[AD_STREAM].get(account_id, {})
            account = self._totals[ACCOUNT_STREAM].get(account_id, {})
            for day in days:
                check.days_checked += 1
                mine, theirs = ads.get(day, DayTotals()), account.get(day, DayTotals())
                gaps = {m: theirs.sums[m] - mine.sums[m] for m in metrics}
                tolerance = HALF_CENT * (mine.rows + 1)
                off = any(abs(gap) > (tolerance if m == "spend" else 0) for m, gap in gaps.items())
                if not off:
                    continue
                check.days_off += 1
                check.spend_gap += gaps.get("spend", Decimal(0))
                logger.warning(
                    "Reconciliation: account %s on %s: the account's total differs from its %d ad rows' sum: %s",
                    account_id,
                    day,
                    mine.rows,
                    ", ".join(f"{m} {theirs.sums[m]} vs {mine.sums[m]} (gap {gaps[m]})" for m in metrics),
                )
        return results
