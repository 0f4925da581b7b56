"""Run counters, so that failures can be found, counted and debugged after an overnight run.

Each (stream, account) pair keeps one :class:`PartitionStats`; the stream logs it when the
partition ends and the tap logs the whole run at exit, both as readable text and as one
machine-readable ``RUN_SUMMARY {json}`` line that a log pipeline can parse. The SDK's own
``METRIC`` lines are untouched. The run summary also carries the insights reconciliation
(``reconcile.py``): per account, the days checked, the days off and the spend gap.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from tap_meta_ads.reconcile import Reconciliation

SUMMARY_PREFIX = "RUN_SUMMARY"


@dataclass
class PartitionStats:
    """What happened while one stream read one ad account."""

    stream: str
    account_id: str
    records: int = 0
    pages: int = 0
    requests: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    throttle_wait_seconds: float = 0.0
    pacing_wait_seconds: float = 0.0
    page_size_reductions: int = 0
    resumed_from_page: int | None = None
    cursor_restarts: int = 0
    #: Objects or files left out, by reason (``unservable_object``, ``asset_unavailable``, ``asset_too_large``).
    skipped: Counter[str] = field(default_factory=Counter)
    #: Optional fields Meta refused to this account, read without (``GraphStream.optional_fields``).
    dropped_fields: list[str] = field(default_factory=list)
    status: str = "running"

    @property
    def key(self) -> tuple[str, str]:
        """(stream, account_id), for log lines."""
        return (self.stream, self.account_id)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view (the Counter becomes a plain dict, floats rounded)."""
        data = asdict(self)
        data["retries"] = dict(self.retries)
        data["skipped"] = dict(self.skipped)
        data["retries_total"] = sum(self.retries.values())
        data["throttle_wait_seconds"] = round(self.throttle_wait_seconds, 3)
        data["pacing_wait_seconds"] = round(self.pacing_wait_seconds, 3)
        return data

    def describe(self) -> str:
        """One readable line."""
        retries = ", ".join(f"{k}={v}" for k, v in sorted(self.retries.items())) or "none"
        skipped = ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items()))
        return (
            f"{self.stream} account {self.account_id} {self.status}: {self.records} records, "
            f"{self.pages} pages, {self.requests} requests, retries: {retries}, "
            f"throttled {self.throttle_wait_seconds:.1f}s, paced {self.pacing_wait_seconds:.1f}s, "
            f"page-size reductions {self.page_size_reductions}"
            + (f", skipped: {skipped}" if skipped else "")
            + (f", fields Meta refused: {', '.join(self.dropped_fields)}" if self.dropped_fields else "")
        )


class RunMonitor:
    """All partitions of a run, in the order they started."""

    def __init__(self) -> None:
        self.partitions: list[PartitionStats] = []
        #: The ad rows' and the account's daily totals, checked against each other when the run ends.
        self.reconciliation = Reconciliation()
        #: Ad accounts that failed alone (``errors.ACCOUNT_SCOPED``), with the reason, in the order they failed.
        self.failed_accounts: dict[str, str] = {}
        #: ``on_account_error``: whether failed accounts fail the run (exit 1) or not (``skip``: exit 0).
        self.fail_on_account_error = True
        self._announced: set[str] = set()
        self._lock = threading.Lock()
        #: Meta's clock minus this machine's (seconds), measured at start (``token_health.py``); ``None``: unknown.
        self.server_clock_offset: float | None = None
        #: What the token inspection found (``token_health.py``), for the run summary.
        self.token: dict[str, object] | None = None
        #: The check to run once, before the first stream of the run reads anything (see ``run_preflight``).
        self.preflight: Callable[[], None] | None = None
        #: Whether a stream began to read (a run summary is then due, even if the check stopped the run).
        self.started = False

    def account_failed(self, account_id: str, reason: str) -> bool:
        """Note that an account failed; True the first time (the caller logs its one ERROR line then)."""
        with self._lock:
            if account_id in self.failed_accounts:
                return False
            self.failed_accounts[account_id] = reason
            return True

    def announce(self, account_id: str) -> bool:
        """True the first time an account's failure is written out (its one ERROR line), False after."""
        with self._lock:
            if account_id in self._announced:
                return False
            self._announced.add(account_id)
            return True

    def has_failed(self, account_id: str) -> bool:
        """Whether the account failed earlier in the run (its other partitions are not read)."""
        return account_id in self.failed_accounts

    def run_status(self, *, exited_cleanly: bool) -> str:
        """``succeeded``, ``failed``, or ``succeeded_with_failed_accounts`` (``on_account_error: skip``)."""
        if not exited_cleanly:
            return "failed"
        if self.failed_accounts:
            return "failed" if self.fail_on_account_error else "succeeded_with_failed_accounts"
        return "succeeded"

    def run_preflight(self) -> None:
        """Run the start-of-run check once (the first stream to read calls this); a failure stops the run."""
        check, self.preflight = self.preflight, None
        self.started = True
        if check is not None:
            check()

    def start(self, stream: str, account_id: str) -> PartitionStats:
        """Open the counters of one partition."""
        stats = PartitionStats(stream=stream, account_id=account_id)
        self.partitions.append(stats)
        return stats

    def made_progress(self) -> bool:
        """Whether any page of the run has been read: the API was reachable at least once."""
        return any(p.pages for p in self.partitions)

    def totals(self) -> dict[str, object]:
        """The run as a whole."""
        retries: Counter[str] = Counter()
        skipped: Counter[str] = Counter()
        for p in self.partitions:
            retries.update(p.retries)
            skipped.update(p.skipped)
        return {
            "records": sum(p.records for p in self.partitions),
            "pages": sum(p.pages for p in self.partitions),
            "requests": sum(p.requests for p in self.partitions),
            "retries": dict(retries),
            "retries_total": sum(retries.values()),
            "throttle_wait_seconds": round(sum(p.throttle_wait_seconds for p in self.partitions), 3),
            "pacing_wait_seconds": round(sum(p.pacing_wait_seconds for p in self.partitions), 3),
            "page_size_reductions": sum(p.page_size_reductions for p in self.partitions),
            "skipped": dict(skipped),
        }

    def log_partition(self, logger: logging.Logger, stats: PartitionStats) -> None:
        """Log one partition's summary, readable and machine-readable."""
        logger.info("Summary: %s", stats.describe())
        logger.info("%s %s", SUMMARY_PREFIX, json.dumps({"scope": "partition", **stats.as_dict()}))

    def log_run(self, logger: logging.Logger, status: str) -> None:
        """Log the whole run's summary; called once, at exit, whether the run succeeded or not."""
        totals = self.totals()
        logger.info(
            "Run %s: %s records, %s pages, %s requests, %s retries, %.1fs throttled, %s page-size reductions",
            status,
            totals["records"],
            totals["pages"],
            totals["requests"],
            totals["retries_total"],
            totals["throttle_wait_seconds"],
            totals["page_size_reductions"],
        )
        checks = self.reconciliation.check(logger)
        for account_id, check in checks.items():
            logger.info(
                "Reconciliation of account %s: %d days checked, %d off, spend gap %s",
                account_id,
                check.days_checked,
                check.days_off,
                check.spend_gap,
            )
        if self.failed_accounts:
            logger.info(
                "Failed ad accounts (%d): %s",
                len(self.failed_accounts),
                "; ".join(f"act_{a}: {why}" for a, why in self.failed_accounts.items()),
            )
        payload = {
            "scope": "run",
            "status": status,
            "failed_accounts": [{"account_id": a, "reason": why} for a, why in self.failed_accounts.items()],
            **totals,
            "reconciliation": {account_id: check.as_dict() for account_id, check in checks.items()},
            "token": self.token,
            "partitions": [p.as_dict() for p in self.partitions],
        }
        logger.info("%s %s", SUMMARY_PREFIX, json.dumps(payload))
