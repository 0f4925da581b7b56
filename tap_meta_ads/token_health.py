"""Token health, checked once before any extraction: the commonest way a nightly backup dies, told the first night.

A long-lived user token lasts about 60 days; a user can also lose a permission or an ad account, and Meta can
end an app's data access (``data_access_expires_at``). Found out at the first page, that is a failed run among
the data; found out days later, it is a gap in the backup. So the tap starts with:

1. ``GET /debug_token?input_token=...`` (developers.facebook.com/docs/graph-api/reference/debug_token), which
   gives ``is_valid``, ``expires_at`` (0: never, as system-user tokens), ``data_access_expires_at`` and
   ``scopes``. The days left are logged (a WARNING below ``token_expiry_warning_days``) and go in the run
   summary. The run stops with one line when the token has expired or is invalid, or has neither ``ads_read``
   nor ``ads_management``. Meta lets only an app token or a token of one of the app's developers inspect a
   token (code 100 otherwise): then one line says so and the run goes on.
2. ``GET /act_{id}?fields=id`` for each configured account: an account the token cannot see stops the run with
   one line naming it, before any stream starts (not halfway, after other accounts were written).

Meta's interface puts the inspected token in the query string (``input_token``). That URL is built here, sent,
and never logged: no exception text from this module carries it (requests' errors are replaced by their kind),
and the redaction filter (``redact.py``) masks the token anywhere else. The responses' ``Date`` header gives
Meta's clock, which the change log's ``until`` is taken from (``RunMonitor.server_clock_offset``).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests
import requests.adapters

from tap_meta_ads.accounts import account_id_of
from tap_meta_ads.calls import BearerAuth, appsecret_proof
from tap_meta_ads.errors import (
    Action,
    GraphAPIError,
    GraphError,
    account_scope_reason,
    classify,
    connect_failure,
    parse_json_body,
)
from tap_meta_ads.monitor import RunMonitor
from tap_meta_ads.pages import server_time_of

#: Either permission lets the token read an ad account's objects and insights.
ADS_SCOPES = frozenset({"ads_read", "ads_management"})
#: Attempts of one check call when Meta throttles or fails transiently (the check is one call, not a run).
TRIES = 3
_DAY = 86400.0
HTTP_OK_MAX = 299


@dataclass
class _Answer:
    """A check call's outcome: the body of a 2xx, or Meta's error."""

    body: dict[str, Any] | None
    error: GraphError | None


class TokenHealth:
    """The token check of one run (see the module docstring); :meth:`check` raises ``GraphAPIError`` to stop."""

    def __init__(self, config: dict[str, Any], logger: logging.Logger, monitor: RunMonitor) -> None:
        self.config = config
        self.logger = logger
        self.monitor = monitor
        self.base = f"{config['api_url'].rstrip('/')}/{config['api_version']}"
        token = config["access_token"]
        self._token = token
        self._proof = appsecret_proof(token, config.get("app_secret"))
        self._timeout = (min(10.0, float(config["request_timeout_seconds"])), float(config["request_timeout_seconds"]))
        self._wait = min(float(config["backoff_base_seconds"]), 5.0)
        self._warn_days = float(config["token_expiry_warning_days"])
        self._session = requests.Session()
        self._session.auth = BearerAuth(token)

    def check(self) -> None:
        """Inspect the token, then each configured account; stop with one line on what makes extraction fail."""
        try:
            summary = self._inspect()
            self._check_accounts()
        finally:
            self._session.close()
        self.monitor.token = summary

    # -- the token --------------------------------------------------------------------------------

    def _inspect(self) -> dict[str, object]:
        answer = self._get("debug_token", {"input_token": self._token})
        if answer.error is not None:
            if classify(answer.error) is Action.AUTH:
                raise GraphAPIError(self._invalid(answer.error.message))
            self.logger.warning(
                "Meta refused to inspect the access token (%s): its expiry and scopes are not checked; going on",
                answer.error.describe(),
            )
            return {"inspected": False, "reason": answer.error.code_label}
        data = (answer.body or {}).get("data")
        if not isinstance(data, dict):
            self.logger.warning("Meta's token inspection answered without data: expiry not checked; going on")
            return {"inspected": False, "reason": "no data"}
        now = time.time() + (self.monitor.server_clock_offset or 0.0)
        expires_at, data_expires_at = _epoch(data.get("expires_at")), _epoch(data.get("data_access_expires_at"))
        scopes = sorted(str(s) for s in data.get("scopes") or [])
        if data.get("is_valid") is not True:
            error = data.get("error")
            if not isinstance(error, dict):
                error = {}
            if expires_at and expires_at <= now:
                raise GraphAPIError(
                    f"The access token expired on {_when(expires_at)}: generate a new one (a system user's token "
                    "does not expire) and set access_token. No data was extracted."
                )
            raise GraphAPIError(self._invalid(str(error.get("message") or "is_valid is false")))
        if not ADS_SCOPES & set(scopes):
            raise GraphAPIError(
                f"The access token has neither ads_read nor ads_management (its scopes: {', '.join(scopes) or 'none'}):"
                " generate a token with ads_read and set access_token. No data was extracted."
            )
        days = self._days_left("The access token", expires_at, now)
        data_days = self._days_left("The app's data access for this user", data_expires_at, now)
        return {
            "inspected": True,
            "type": data.get("type"),
            "expires_at": expires_at,
            "days_left": days,
            "data_access_expires_at": data_expires_at,
            "data_access_days_left": data_days,
            "scopes": scopes,
            "warning": any(d is not None and d < self._warn_days for d in (days, data_days)),
        }

    def _days_left(self, what: str, at: int, now: float) -> float | None:
        """Log how long ``what`` lasts (a warning below the threshold); ``None`` when it never expires."""
        if not at:
            self.logger.info("%s never expires", what)
            return None
        days = round((at - now) / _DAY, 1)
        if at <= now:
            raise GraphAPIError(f"{what} expired on {_when(at)}: renew it and set access_token. No data was extracted.")
        if days < self._warn_days:
            self.logger.warning(
                "%s expires on %s, in %.1f days (below token_expiry_warning_days=%g): renew it before then",
                what,
                _when(at),
                days,
                self._warn_days,
            )
        else:
            self.logger.info("%s expires on %s: %.1f days left", what, _when(at), days)
        return days

    @staticmethod
    def _invalid(message: str) -> str:
        return (
            f"The access token is not valid (Meta: {message}): generate a new one with ads_read and set "
            "access_token. No data was extracted."
        )

    # -- the accounts -----------------------------------------------------------------------------

    def _check_accounts(self) -> None:
        """Check every configured account at once; an account the token cannot read fails alone.

        Such an account is noted as failed (``monitor.account_failed``): its partitions are not read and the
        first of them writes its one ERROR line, while every other account is extracted (``on_account_error``
        sets the exit code), as when a stream meets the same error. A token that cannot work stops the run.
        Checked one after another, 50 accounts took 50 calls of Meta's latency before the first page.
        """
        accounts = [account_id_of(raw) for raw in self.config.get("account_ids") or ()]  # discovered: visible
        if not accounts:
            return
        workers = max(1, min(len(accounts), int(self.config.get("max_concurrent_requests", 32))))
        self._session.mount(self.base, requests.adapters.HTTPAdapter(pool_maxsize=workers))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="account-check") as pool:
            answers = list(pool.map(lambda a: self._get(f"act_{a}", {"fields": "id"}), accounts))
        for account, answer in zip(accounts, answers, strict=True):
            error = answer.error
            if error is None:
                continue
            if classify(error) is Action.AUTH:
                raise GraphAPIError(self._invalid(error.message))
            reason = account_scope_reason(error)
            if reason is not None:
                self.monitor.account_failed(account, f"{reason} ({error.describe()}), found before the run")
                continue
            self.logger.warning("Could not check ad account act_%s (%s); going on", account, error.describe())

    # -- one call ---------------------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, Any]) -> _Answer:
        """One check call with a few retries; never logs or raises its URL (it may hold ``input_token``)."""
        if self._proof:
            params = {**params, "appsecret_proof": self._proof}
        for attempt in range(1, TRIES + 1):
            try:
                with _no_request_lines():
                    response = self._session.get(
                        f"{self.base}/{path}", params=params, timeout=self._timeout, allow_redirects=False
                    )
            except requests.RequestException as exc:
                if attempt == TRIES:  # worded as the streams word it (client.py); the URL (and its query) left out
                    url = urllib.parse.urlsplit(self.base)
                    host = f"{url.scheme}://{url.netloc.rpartition('@')[2]}"
                    reason = connect_failure(exc) or type(exc).__name__
                    msg = (
                        f"Cannot connect to {host} ({reason}; {TRIES} attempts, checking the access token): check "
                        "the setting api_url, and that this machine can reach that host"
                    )
                    raise GraphAPIError(msg) from None
                time.sleep(self._wait * attempt)
                continue
            if self.monitor.server_clock_offset is None and response.headers.get("Date"):
                self.monitor.server_clock_offset = server_time_of(response) - time.time()
            body = parse_json_body(response.text)
            if response.status_code <= HTTP_OK_MAX and isinstance(body, dict):
                return _Answer(body, None)
            error = GraphError.from_body(response.status_code, body)
            if classify(error) in (Action.WAIT, Action.RETRY) and attempt < TRIES:
                time.sleep(self._wait * attempt)
                continue
            return _Answer(None, error)
        raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def _no_request_lines() -> Iterator[None]:
    """Silence urllib3's DEBUG line for this call: it prints the request's URL, here with ``input_token``.

    (The redaction filter would mask the token in it; this keeps the URL from being logged at all.)
    """
    logger = logging.getLogger("urllib3.connectionpool")
    level = logger.level
    logger.setLevel(max(level, logging.INFO))
    try:
        yield
    finally:
        logger.setLevel(level)


def _epoch(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _when(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
