"""Meta's usage headers: how close a run is to the rate-limit wall, and how long to wait.

Every Graph API response may carry ``x-app-usage``, ``x-ad-account-usage``,
``x-business-use-case-usage`` and ``x-fb-ads-insights-throttle``: JSON strings whose numbers
are percentages of a budget. Throttling starts at 100. Reading them on every response lets
the tap slow down *before* the wall (pacing) and wait exactly as long as Meta says once it
is there (``estimated_time_to_regain_access`` in minutes, ``reset_time_duration`` in seconds),
instead of guessing with blind exponential backoff. This is the one place that decides waits.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

_APP = "x-app-usage"
_ACCOUNT = "x-ad-account-usage"
_BUC = "x-business-use-case-usage"
_INSIGHTS = "x-fb-ads-insights-throttle"
USAGE_HEADERS = (_APP, _ACCOUNT, _BUC, _INSIGHTS)
_FULL = 100.0


@dataclass(frozen=True)
class Usage:
    """What one response said about the budgets.

    ``pct`` is the highest percentage in any header (0 when none was sent), ``reset_seconds``
    the longest time Meta said it needs before the budget recovers (``None`` when it gave none).
    """

    pct: float = 0.0
    reset_seconds: float | None = None
    seen: bool = False

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Usage:
        """Read every usage header present; malformed ones are ignored, never fatal."""
        pcts: list[float] = []
        seconds: list[float] = []
        minutes: list[float] = []
        seen = False
        for name in USAGE_HEADERS:
            raw = headers.get(name)
            if not raw:
                continue
            try:
                value = json.loads(raw)
            except ValueError:
                continue
            seen = True
            _collect(value, pcts, seconds, minutes)
        return cls(pct=max(pcts, default=0.0), reset_seconds=_reset(seconds, minutes), seen=seen)


def _reset(seconds: list[float], minutes: list[float]) -> float | None:
    """How long until the budget recovers, from hints in seconds and in whole minutes.

    ``estimated_time_to_regain_access`` is whole minutes, so ``m`` means (m-1, m] minutes; a
    seconds hint that falls in that range is the same wait, measured more finely, and wins.
    """
    sec = max(seconds) if seconds else None
    mins = max(minutes) if minutes else None
    if mins is None:
        return sec
    if sec is None:
        return mins * 60.0
    return max(sec, (mins - 1) * 60.0)


def _collect(value: object, pcts: list[float], seconds: list[float], minutes: list[float]) -> None:
    """Walk a usage header's JSON (flat maps, or BUC's account -> list of maps)."""
    if isinstance(value, list):
        for item in value:
            _collect(item, pcts, seconds, minutes)
        return
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        if isinstance(item, (dict, list)):
            _collect(item, pcts, seconds, minutes)
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            number = float(item)
            if key == "estimated_time_to_regain_access":
                if number > 0:
                    minutes.append(number)
            elif key == "reset_time_duration":
                if number > 0:
                    seconds.append(number)
            elif key in {"call_count", "total_time", "total_cputime", "acc_id_util_pct", "app_id_util_pct"}:
                pcts.append(number)


#: Meta's longest usage window: app and business use case usage are counted over a rolling hour. A call
#: older than that counts in no window, so the pacer forgets it (memory stays flat however long the run).
LONGEST_WINDOW_SECONDS = 3600.0


class Pacer:
    """Spreads the calls left in a budget over the time until the budget grows again.

    Below ``threshold_pct`` it never waits. Above it, it estimates how many points a call
    costs (from how the percentage rose between calls), hence the budget in calls and how many
    calls the window holds, and how many calls remain before the wall (``spare_calls`` are kept spare:
    one per account read at once, since all of them may act on the same reading of the app's budget).
    Meta's windows slide: a call stops counting a window's length after it was made. So when the
    caller says when each of its calls was sent (``sent_at``, a monotonic clock), the calls left
    are spread over the time until the oldest of its own calls leaves the window, and once none
    are left it waits exactly until enough of them have left; the window's length is read from
    ``reset_seconds`` (the time until the newest call, just sent, stops counting). Calls made by
    others are counted from the percentage but never assumed to leave. Without ``sent_at`` (or
    before any of its calls is in the window) the calls left are spread over ``reset_seconds``.
    Without a reset hint it falls back to ``fallback_seconds``, doubling as usage climbs.
    """

    def __init__(
        self, threshold_pct: float, fallback_seconds: float, max_wait_seconds: float, spare_calls: int = 1
    ) -> None:
        self.threshold_pct = threshold_pct
        self.spare_calls = spare_calls
        self.fallback_seconds = fallback_seconds
        self.max_wait_seconds = max_wait_seconds
        self._last_pct: float | None = None
        self._cost_per_call = 1.0
        self._sent: deque[float] = deque()
        #: Every chain of an ad account (one per stream) shares its pacer: they spend one budget.
        self._lock = threading.Lock()
        self._held_until = 0.0

    def hold(self, seconds: float) -> None:
        """Meta throttled the account (e.g. 80000/80004, 17/2446079): none of its chains calls for ``seconds``."""
        with self._lock:
            self._held_until = max(self._held_until, time.monotonic() + seconds)

    def held_for(self) -> float:
        """How long the account's chains must still wait after a throttle (0: none)."""
        return max(0.0, self._held_until - time.monotonic())

    @property
    def remembered_calls(self) -> int:
        """Own calls kept to know when each leaves the window: at most an hour's (``LONGEST_WINDOW_SECONDS``)."""
        return len(self._sent)

    def observe(self, usage: Usage, sent_at: float | None = None) -> float:
        """Take one response's usage; return how many seconds to wait before the next call."""
        with self._lock:
            return self._observe(usage, sent_at)

    def _observe(self, usage: Usage, sent_at: float | None) -> float:
        if sent_at is not None:
            sent = self._sent
            sent.append(sent_at)
            while sent[0] < sent_at - LONGEST_WINDOW_SECONDS:  # below the threshold nothing else trims it
                sent.popleft()
        if not usage.seen:
            return 0.0
        if self._last_pct is not None and usage.pct > self._last_pct:
            rise = usage.pct - self._last_pct
            self._cost_per_call = 0.7 * self._cost_per_call + 0.3 * rise
        self._last_pct = usage.pct
        if usage.pct < self.threshold_pct:
            return 0.0
        if usage.pct >= _FULL:
            wait = usage.reset_seconds if usage.reset_seconds is not None else self._fallback(usage.pct)
        elif usage.reset_seconds is not None:
            wait = self._spread(usage.pct, usage.reset_seconds, sent_at)
        else:
            wait = self._fallback(usage.pct)
        return min(wait, self.max_wait_seconds)

    def _spread(self, pct: float, reset_seconds: float, sent_at: float | None) -> float:
        cost = max(self._cost_per_call, 0.01)
        calls_left = (_FULL - pct) / cost - self.spare_calls  # kept spare below the wall
        expiries = self._own_expiries(reset_seconds, sent_at)
        if not expiries:
            return reset_seconds / max(1.0, calls_left + 1.0)
        now = time.monotonic()
        if calls_left >= 1.0:
            return max(0.0, expiries[0] - now) / (calls_left + 1.0)
        needed = min(len(expiries), math.ceil(1.0 - calls_left))  # own calls that must leave first
        return max(0.0, expiries[needed - 1] - now)

    def _own_expiries(self, reset_seconds: float, sent_at: float | None) -> list[float]:
        """When each own call still in the window stops counting (monotonic clock), oldest first."""
        if sent_at is None:
            return []
        window = reset_seconds + (time.monotonic() - sent_at)  # the call just sent counts this long
        horizon = time.monotonic() - window
        sent = self._sent
        while sent and sent[0] <= horizon:
            sent.popleft()
        return [t + window for t in sent]

    def _fallback(self, pct: float) -> float:
        steps = max(0.0, (pct - self.threshold_pct) / 5.0)
        return self.fallback_seconds * math.pow(2.0, min(steps, 10.0))
