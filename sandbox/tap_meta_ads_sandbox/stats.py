"""What the sandbox saw: request counts by route, outcome and account, plus a capped request log.

Tests and benchmarks read these to prove claims a client cannot prove about itself: that no request
carried the token in its URL, that a resumed run started from a cursor, how often it was throttled.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any

LOG_CAP = 100_000

# Query params never written to the log: they are secrets (or derived from one).
SECRET_PARAMS = frozenset({"access_token", "appsecret_proof"})


class Stats:
    """Thread-safe counters; :meth:`snapshot` returns plain JSON-ready data."""

    def __init__(self, log_cap: int = LOG_CAP) -> None:
        self._lock = threading.Lock()
        self._closed_changed = threading.Condition(self._lock)
        self._log_cap = log_cap
        self.reset()

    def reset(self) -> None:
        """Forget everything counted so far (the request log numbering and its clock, ``t``, restart)."""
        with self._lock:
            self._requests = 0
            self._by_route: Counter[str] = Counter()
            self._by_outcome: Counter[str] = Counter()
            self._by_account: Counter[str] = Counter()
            self._throttled = 0
            self._faulted = 0
            self._token_in_url = 0
            self._batched = 0
            self._records = 0
            self._connections = 0
            self._connections_closed = 0
            self._since = time.monotonic()
            self._log: deque[dict[str, Any]] = deque(maxlen=self._log_cap)

    def record(
        self,
        *,
        route: str,
        account_id: str | None,
        params: dict[str, str],
        status: int,
        outcome: str,
        rows: int,
        token_in_url: bool,
        batched: bool = False,
    ) -> None:
        """Count one Graph API call once its answer is decided; ``batched`` for an entry of a batch request.

        An entry of a batch counts as a call of its own (Meta counts it so for rate limits), so the batch
        shows as one ``batch`` call plus one call per entry, each marked ``batched`` in the log.
        """
        with self._lock:
            self._requests += 1
            self._by_route[route] += 1
            self._by_outcome[outcome] += 1
            if account_id is not None:
                self._by_account[account_id] += 1
            if outcome == "throttled":
                self._throttled += 1
            if outcome.startswith("fault:"):
                self._faulted += 1
            if token_in_url:
                self._token_in_url += 1
            if batched:
                self._batched += 1
            self._records += rows
            self._log.append(
                {
                    "n": self._requests,
                    "t": round(time.monotonic() - self._since, 4),
                    "route": route,
                    "account_id": account_id,
                    "params": {k: v for k, v in params.items() if k not in SECRET_PARAMS},
                    "status": status,
                    "outcome": outcome,
                    "rows": rows,
                    "batched": batched,
                }
            )

    def connection_opened(self) -> None:
        """Count one client connection accepted (a client that keeps connections alive opens few)."""
        with self._lock:
            self._connections += 1

    def connection_closed(self) -> None:
        """Count one connection the server has closed (idle timeout, ``Connection: close``, a fault)."""
        with self._closed_changed:
            self._connections_closed += 1
            self._closed_changed.notify_all()

    def wait_connections_closed(self, count: int, timeout: float) -> bool:
        """Block until the server has closed ``count`` connections; False if ``timeout`` passed first.

        A test that needs the server to have dropped a kept-alive connection waits on the event itself:
        timers of different connection threads fire in no order a client can rely on.
        """
        with self._closed_changed:
            return self._closed_changed.wait_for(lambda: self._connections_closed >= count, timeout)

    def snapshot(self) -> dict[str, Any]:
        """Return the stats document of ``GET /_sandbox/stats``."""
        with self._lock:
            return {
                "requests": self._requests,
                "by_route": dict(self._by_route),
                "by_outcome": dict(self._by_outcome),
                "by_account": dict(self._by_account),
                "throttled": self._throttled,
                "faulted": self._faulted,
                "token_in_url": self._token_in_url,
                "batched": self._batched,
                "records_served": self._records,
                "connections": self._connections,
                "connections_closed": self._connections_closed,
                "log": list(self._log),
            }
