"""The retry policy: which faults are retried, how long each wait is, what a give-up says.

Retries run through the SDK's backoff integration; waits honour Meta's hints (``Retry-After``, the usage
headers' regain-access times) and throttles hold every chain of the account (``usage.Pacer.hold``). A page
Meta finds too heavy is asked for again at half the size.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import backoff
import requests
from singer_sdk.exceptions import RetriableAPIError
from singer_sdk.streams import RESTStream
from typing_extensions import override

from tap_meta_ads.errors import (
    PageTooLargeError,
    ThrottledError,
    TransientError,
    connect_failure,
)

if TYPE_CHECKING:
    from backoff.types import Details

    from tap_meta_ads.monitor import RunMonitor
    from tap_meta_ads.partitions import AccountFetch

#: What a retry is worth trying for: Meta's retriable errors (see errors.py) and transport faults.
RETRIABLE_EXCEPTIONS = (
    ConnectionResetError,
    RetriableAPIError,
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
#: The smallest page the tap shrinks to when Meta asks for less data per call.
MIN_PAGE_SIZE = 5
#: Successful pages in a row after which a shrunk page size doubles again.
GROW_AFTER_PAGES = 10

#: Attempts, and the longest wait between them, while the run has never reached the API and no
#: connection can be opened at all (a typo in ``api_url``, a wrong port): a few quick tries, then
#: one line naming the host, instead of half an hour of backoff. Once a page has been read, a
#: connection fault is an outage of a server that exists, and gets the full ``max_retries``.
FIRST_CONTACT_TRIES = 3
FIRST_CONTACT_MAX_WAIT_SECONDS = 10.0


class RetryPolicy(RESTStream[str | None]):
    """Retries of a Graph API call (a mixin of ``GraphStream``)."""

    #: Declared here, set by ``client.GraphStream`` (the one class that combines the mixins).
    monitor: RunMonitor
    _first_contact_failures: int

    # -- retries through the SDK's backoff integration -----------------------------------------

    @override
    def request_decorator(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """The SDK's backoff decorator, minus backoff's own log lines.

        backoff logs every retry and the give-up with the exception's text, which for a connection
        error is the whole URL; ``backoff_handler`` logs each retry instead (reason, attempt, wait,
        fbtrace_id) and a give-up becomes one ``GraphAPIError`` line.
        """
        return backoff.on_exception(
            self.backoff_wait_generator,
            RETRIABLE_EXCEPTIONS,
            max_tries=self.backoff_max_tries,
            on_backoff=self.backoff_handler,
            giveup=self._unreachable_at_first_contact,
            jitter=self.backoff_jitter,
            logger=None,
        )(func)

    def _unreachable_at_first_contact(self, exception: Exception) -> bool:
        """Stop retrying once the first contact has failed to connect ``FIRST_CONTACT_TRIES`` times."""
        if self.monitor.made_progress() or connect_failure(exception) is None:
            return False
        self._first_contact_failures += 1
        return self._first_contact_failures >= FIRST_CONTACT_TRIES

    def _tries_at_first_contact(self, exception: BaseException | None) -> int:
        """How many tries this failure may have before the run has read anything."""
        tries = self.backoff_max_tries()
        return min(tries, FIRST_CONTACT_TRIES) if connect_failure(exception) else tries

    @override
    def backoff_max_tries(self) -> int:
        return int(self.config["max_retries"]) + 1

    @override
    def backoff_wait_generator(self) -> Generator[float, Any, None]:
        """A wait per failure, decided from the exception (Meta's hint) and the attempt number."""
        attempt = 0
        exception = yield 0.0  # primed by backoff with send(None)
        while True:
            attempt += 1
            exception = yield self.retry_wait(exception, attempt)

    @override
    def backoff_jitter(self, value: float) -> float:
        return value  # retry_wait adds its own jitter; hinted waits must stay exact

    def retry_wait(self, exception: BaseException, attempt: int) -> float:
        """Seconds to wait before the next attempt."""
        base = float(self.config["backoff_base_seconds"])
        cap = float(self.config["backoff_max_seconds"])
        if isinstance(exception, PageTooLargeError):
            return 0.0  # the next attempt asks for half as much; nothing to wait for
        if isinstance(exception, ThrottledError) and exception.wait_seconds is not None:
            return min(cap, exception.wait_seconds * random.uniform(1.0, 1.05))  # noqa: S311 - jitter, not crypto
        expo = base * (2.0 ** (attempt - 1))
        if isinstance(exception, ThrottledError):
            expo *= 2.0  # throttled without a hint: Meta's windows are long, lean to the slow side
        if not self.monitor.made_progress() and connect_failure(exception):
            cap = min(cap, FIRST_CONTACT_MAX_WAIT_SECONDS)
        return min(cap, expo * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not crypto

    @override
    def backoff_handler(self, details: Details) -> None:
        """Log and count each retry: reason, attempt n of max, the wait and Meta's trace id."""
        exception = details.get("exception")
        wait = float(details.get("wait") or 0.0)
        reason, trace = retry_reason(exception)
        account: AccountFetch = details["args"][0]
        if isinstance(exception, PageTooLargeError):
            self.shrink_page(account)
        stats = account.stats
        stats.retries[reason] += 1
        if isinstance(exception, ThrottledError):
            stats.throttle_wait_seconds += wait
            account.pacer.hold(wait)  # Meta throttled the account: every chain of it waits, none other
        self.logger.warning(
            "Retrying %s account %s: reason=%s attempt %d of %d, waiting %.2fs%s",
            self.name,
            stats.account_id,
            reason,
            details.get("tries", 0),
            self.backoff_max_tries() if self.monitor.made_progress() else self._tries_at_first_contact(exception),
            wait,
            f" fbtrace_id={trace}" if trace else "",
        )

    def shrink_page(self, account: AccountFetch) -> None:
        """Halve an account's page size (down to a floor) after Meta asked for less data."""
        smaller = max(min(MIN_PAGE_SIZE, account.page_size_limit), account.page_size // 2)
        if smaller < account.page_size:
            account.page_size = smaller
            account.stats.page_size_reductions += 1
            self.logger.warning("Meta asked for less data per call: page size now %d", smaller)
        account.good_pages = 0

    def _page_succeeded(self, account: AccountFetch) -> None:
        """Grow a shrunk page size back after a run of successes."""
        account.good_pages += 1
        if account.page_size < account.page_size_limit and account.good_pages >= GROW_AFTER_PAGES:
            account.page_size = min(account.page_size_limit, account.page_size * 2)
            account.good_pages = 0
            self.logger.info("Page size back up to %d", account.page_size)


def retry_reason(exception: BaseException | None) -> tuple[str, str | None]:
    """A short label for a retry (``throttled:17/2446079``, ``http503``, ``ConnectionError``) and the trace id."""
    if isinstance(exception, ThrottledError):
        return f"throttled:{exception.error.code_label}", exception.error.fbtrace_id
    if isinstance(exception, PageTooLargeError):
        return "reduce_data", exception.error.fbtrace_id
    if isinstance(exception, TransientError):
        return f"transient:{exception.reason}", exception.error.fbtrace_id if exception.error else None
    if exception is None:
        return "unknown", None
    return type(exception).__name__, None
