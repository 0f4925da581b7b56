"""The sandbox's virtual clock and its model of Meta's rate limits and usage headers.

Why a virtual clock: tests must be able to let an hour pass (a rate-limit window, a cursor's lifetime, the
time between two incremental syncs) without sleeping. Every ``Date`` header, every ``updated_time`` stamp
and every rate-limit window reads this clock.

Why sliding windows of call times: the percentages in the usage headers must be truthful (calls in the
window / budget x 100) and the "time to regain access" exact, so a client that honours the hint is
never throttled twice for the same reason.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

THROTTLE_CODES: tuple[str, ...] = ("17/2446079", "80004/2446079", "4", "613", "17", "32")

# Meta's wording per throttle code (and subcode); shared with the fault injector so both sound the same.
THROTTLE_MESSAGES: dict[int, str] = {
    4: "(#4) Application request limit reached",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    80000: "There have been too many calls from this ad-account. Wait a bit and try again.",
    80001: "There have been too many calls to this Page account. Wait a bit and try again.",
    80002: "There have been too many calls to this Instagram account. Wait a bit and try again.",
    80003: "There have been too many calls for this custom audience. Wait a bit and try again.",
    80004: "There have been too many calls to this ad-account. Wait a bit and try again.",
    80005: "There have been too many leadgen api calls to this Page. Wait a bit and try again.",
    80006: "There have been too many messenger api calls to this Page. Wait a bit and try again.",
    80007: "There have been too many WhatsApp Business calls. Wait a bit and try again.",
    80008: "There have been too many calls to this WhatsApp Business account. Wait a bit and try again.",
    80009: "There have been too many calls to this Catalog account. Wait a bit and try again.",
    80010: "There have been too many calls to this Catalog account. Wait a bit and try again.",
    80011: "There have been too many calls to this business. Wait a bit and try again.",
    80012: "There have been too many calls to this ad-account. Wait a bit and try again.",
    80013: "There have been too many calls to this business. Wait a bit and try again.",
    80014: "There have been too many calls for this catalog. Wait a bit and try again.",
}
SUBCODE_USER_TEXT: dict[int, tuple[str, str]] = {
    2446079: (
        "Ad Account Has Too Many API Calls",
        "There have been too many calls from this ad-account. Please wait a bit and try again.",
    ),
}


def parse_throttle_code(text: str) -> tuple[int, int | None]:
    """Parse ``CODE`` or ``CODE/SUBCODE`` and check the code is one Meta throttles with."""
    head, _, tail = text.partition("/")
    if not head.isdigit() or (tail and not tail.isdigit()):
        raise ValueError(f"throttle code must look like CODE or CODE/SUBCODE, got {text!r}")
    code = int(head)
    if code not in THROTTLE_MESSAGES:
        known = ", ".join(str(c) for c in sorted(THROTTLE_MESSAGES))
        raise ValueError(f"unknown throttle code {code}; known: {known}")
    return code, (int(tail) if tail else None)


class VirtualClock:
    """Real time plus an offset that only moves forward (``advance``, ``ensure_at_least``)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """Current virtual Unix time."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward; going back is refused because stamps must only grow."""
        if not seconds >= 0 or math.isinf(seconds):
            raise ValueError("advance_seconds must be a finite number >= 0")
        with self._lock:
            self._offset += seconds
        return self.now()

    def ensure_at_least(self, epoch: float) -> None:
        """Jump forward when a stamp was issued ahead of the clock, so no ``updated_time`` is in the future."""
        with self._lock:
            lag = epoch - (time.time() + self._offset)
            if lag > 0:
                self._offset += lag


@dataclass
class UsageDecision:
    """What the rate limiter decided for one call, with the headers to send."""

    throttled: bool
    code: int = 0
    subcode: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    regain_seconds: int = 0


class RateLimiter:
    """Per-account (ads_management) and per-app call budgets in a sliding window of virtual seconds.

    A call that is throttled does not consume budget, as on Meta; faults and unauthenticated calls
    never reach it.
    """

    def __init__(
        self,
        window_seconds: float,
        account_budget: int,
        app_budget: int,
        throttle_code: str,
        *,
        usage_headers: bool,
    ) -> None:
        self._lock = threading.Lock()
        self._app: deque[float] = deque()
        self._accounts: dict[str, deque[float]] = {}
        self.configure(
            window_seconds=window_seconds,
            account_budget=account_budget,
            app_budget=app_budget,
            throttle_code=throttle_code,
            usage_headers=usage_headers,
        )

    def configure(
        self,
        *,
        window_seconds: float | None = None,
        account_budget: int | None = None,
        app_budget: int | None = None,
        throttle_code: str | None = None,
        usage_headers: bool | None = None,
    ) -> None:
        """Change the knobs at runtime (the control endpoint); values are checked before any is applied."""
        if window_seconds is not None and not window_seconds > 0:
            raise ValueError("rate_window_seconds must be > 0")
        for name, budget in (("account_budget", account_budget), ("app_budget", app_budget)):
            if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
                raise ValueError(f"{name} must be an integer >= 1")
        parsed = parse_throttle_code(throttle_code) if throttle_code is not None else None
        with self._lock:
            if window_seconds is not None:
                self.window_seconds = float(window_seconds)
            if account_budget is not None:
                self.account_budget = account_budget
            if app_budget is not None:
                self.app_budget = app_budget
            if parsed is not None and throttle_code is not None:
                self.throttle_code = throttle_code
                self._code, self._subcode = parsed
            if usage_headers is not None:
                self.usage_headers = usage_headers

    def settings(self) -> dict[str, object]:
        """The current knobs, for ``GET /_sandbox/config``."""
        return {
            "rate_window_seconds": self.window_seconds,
            "account_budget": self.account_budget,
            "app_budget": self.app_budget,
            "throttle_code": self.throttle_code,
            "usage_headers": self.usage_headers,
        }

    def _expire(self, calls: deque[float], now: float) -> None:
        edge = now - self.window_seconds
        while calls and calls[0] <= edge:
            calls.popleft()

    def _regain(self, calls: deque[float], budget: int, now: float) -> float:
        """Seconds until fewer than ``budget`` calls remain in the window (0 when already so)."""
        excess = len(calls) - budget
        if excess < 0:
            return 0.0
        return max(0.0, calls[excess] + self.window_seconds - now)

    def call(self, account_id: str | None, now: float) -> UsageDecision:
        """Account for one Graph call: throttle it or record it, and build the usage headers."""
        with self._lock:
            acct_calls = self._accounts.setdefault(account_id, deque()) if account_id else deque()
            self._expire(self._app, now)
            self._expire(acct_calls, now)
            app_regain = self._regain(self._app, self.app_budget, now)
            acct_regain = self._regain(acct_calls, self.account_budget, now) if account_id else 0.0
            decision = UsageDecision(throttled=False)
            if acct_regain > 0:
                decision = UsageDecision(throttled=True, code=self._code, subcode=self._subcode)
            elif app_regain > 0:
                decision = UsageDecision(throttled=True, code=4)
            if decision.throttled:
                decision.regain_seconds = math.ceil(max(acct_regain, app_regain))
            else:
                self._app.append(now)
                if account_id:
                    acct_calls.append(now)
            if self.usage_headers or decision.throttled:
                decision.headers = self._headers(account_id, acct_calls, now, decision)
            return decision

    def peek(self, account_id: str | None, now: float) -> dict[str, str]:
        """The usage headers as they stand, without counting a call (for answers that are faults)."""
        with self._lock:
            if not self.usage_headers:
                return {}
            acct_calls = self._accounts.setdefault(account_id, deque()) if account_id else deque()
            self._expire(self._app, now)
            self._expire(acct_calls, now)
            return self._headers(account_id, acct_calls, now, UsageDecision(throttled=False))

    def _headers(
        self, account_id: str | None, acct_calls: deque[float], now: float, decision: UsageDecision
    ) -> dict[str, str]:
        """Build the three usage headers; when headers are withheld only the throttled answer gets BUC."""
        app_pct = round(len(self._app) / self.app_budget * 100, 2)
        headers: dict[str, str] = {}
        if self.usage_headers:
            headers["x-app-usage"] = _compact(
                {"call_count": _num(app_pct), "total_time": _num(app_pct), "total_cputime": _num(app_pct)}
            )
        if not account_id:
            return headers
        acct_pct = round(len(acct_calls) / self.account_budget * 100, 2)
        regain = decision.regain_seconds if decision.throttled else 0
        reset = regain if decision.throttled else math.ceil(self._regain(acct_calls, 1, now))
        headers["x-business-use-case-usage"] = _compact(
            {
                account_id: [
                    {
                        "type": "ads_management",
                        "call_count": _num(acct_pct),
                        "total_cputime": _num(acct_pct),
                        "total_time": _num(acct_pct),
                        "estimated_time_to_regain_access": math.ceil(regain / 60),
                        "ads_api_access_tier": "standard_access",
                    }
                ]
            }
        )
        if self.usage_headers or decision.throttled:
            headers["x-ad-account-usage"] = _compact(
                {
                    "acc_id_util_pct": _num(acct_pct),
                    "reset_time_duration": reset,
                    "ads_api_access_tier": "standard_access",
                }
            )
        return headers


def _compact(doc: object) -> str:
    """Headers are compact JSON, as Meta sends them."""
    return json.dumps(doc, separators=(",", ":"))


def _num(pct: float) -> float | int:
    """Whole percentages as ints (as Meta mostly sends them), fractions kept (acc_id_util_pct has them)."""
    return int(pct) if pct == int(pct) else pct
