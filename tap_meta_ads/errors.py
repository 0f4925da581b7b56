"""Meta's error bodies, and the one table that decides what each error means for a run.

Meta answers almost every failure, rate limits included, with HTTP 400 and a JSON body
``{"error": {"code", "error_subcode", "type", "message", "is_transient", "fbtrace_id", ...}}``.
Deciding by HTTP status alone (the SDK's default) would give up on throttling and retry
permission errors, so every response goes through :func:`classify`, and the exception
raised says what to do: wait, back off, shrink the page, restart the partition or stop.
Decisions come from the documented codes, never from message text, with one exception:
the "reduce the amount of data" failure, which has no code of its own.
"""

from __future__ import annotations

import email.utils
import enum
import json
import time
from dataclasses import dataclass

from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NameResolutionError, NewConnectionError


class Action(enum.Enum):
    """What the stream does about an error."""

    WAIT = "throttled"  # Meta is rate limiting: wait as long as it says, then retry.
    RETRY = "transient"  # A passing fault: exponential backoff with jitter, then retry.
    SHRINK = "reduce_data"  # The page was too heavy: halve the page size, then retry.
    RESTART = "cursor_rejected"  # The saved cursor is no longer valid: restart from the bookmark.
    RESUBMIT = "report_run_lost"  # An async report run's results are gone: submit the report run again.
    SKIP_OBJECT = "object_unservable"  # One object of the page cannot be served: read the page around it.
    AUTH = "token_invalid"  # The token is invalid or expired: stop.
    PERMISSION = "permission"  # A permission is missing: stop.
    FATAL = "fatal"  # Anything else: stop with Meta's own words.


#: Codes Meta uses for rate limiting (the notes' table); any subcode of these throttles.
THROTTLE_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
#: Codes that are transient by nature: unknown error, service unavailable, request aborted.
TRANSIENT_CODES = frozenset({1, 2, 960})
#: Token problems: 190 and its subcodes (458, 460, 463, 467, ...), and 102 (session key invalid).
AUTH_CODES = frozenset({102, 190})
#: Permission errors: 10 and the 200-299 family.
PERMISSION_CODES = frozenset({10, *range(200, 300)})
#: "Invalid cursors values": the code Meta answers a paging cursor it no longer accepts with.
CURSOR_CODE = 2642
#: "Error accessing adreport job": a report run's results could not be read, even after 100 %; known to
#: pass when the report is submitted again (see the notes' "Async insights").
REPORT_RUN_LOST_CODE = 2601
#: "The start date of the time range cannot be beyond 37 months from the current date": the tap clamps its
#: starts to the account's 37 months, so this means the configured days (or this machine's clock) disagree
#: with Meta's: a configuration error, never worth a retry.
RETENTION_CODE = 3018
#: Subcodes Meta answers a whole page with because ONE object on it cannot be served: "Ad Creative Is
#: Incomplete" (100/2446289, the creative's post was deleted; airbytehq/airbyte#65944 and #66027, where it
#: fails the whole stream). The page is read around that object instead (``client.py``).
UNSERVABLE_OBJECT_SUBCODES = frozenset({2446289})
#: The one message-text rule: Meta has no own code for a page that is too heavy.
REDUCE_DATA_TEXT = "reduce the amount of data"

HTTP_TOO_MANY_REQUESTS = 429
HTTP_SERVER_ERROR = 500


@dataclass(frozen=True)
class GraphError:
    """The fields of Meta's error body that the tap acts on or reports."""

    status: int
    code: int | None = None
    subcode: int | None = None
    type: str | None = None
    message: str = ""
    fbtrace_id: str | None = None
    is_transient: bool = False
    #: Meta's short title for people (``error_user_title``), e.g. "Ad Creative Is Incomplete".
    user_title: str | None = None

    @classmethod
    def from_body(cls, status: int, body: object) -> GraphError:
        """Read Meta's error object; anything else becomes a bare HTTP error."""
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return cls(status=status, message=f"HTTP {status} without a Graph API error body")
        return cls(
            status=status,
            code=_as_int(error.get("code")),
            subcode=_as_int(error.get("error_subcode")),
            type=_as_str(error.get("type")),
            message=_as_str(error.get("message")) or "",
            fbtrace_id=_as_str(error.get("fbtrace_id")),
            is_transient=error.get("is_transient") is True,
            user_title=_as_str(error.get("error_user_title")),
        )

    @property
    def code_label(self) -> str:
        """``code`` or ``code/subcode``, as Meta's docs write them."""
        if self.code is None:
            return f"http{self.status}"
        return f"{self.code}/{self.subcode}" if self.subcode else str(self.code)

    def describe(self) -> str:
        """One line with everything an operator needs to look the error up."""
        parts = [f"Meta API error {self.code_label} (HTTP {self.status}"]
        if self.type:
            parts.append(f", {self.type}")
        parts.append(f"): {self.message or 'no message'}")
        if self.fbtrace_id:
            parts.append(f" [fbtrace_id {self.fbtrace_id}]")
        return "".join(parts)


def classify(error: GraphError) -> Action:
    """The error table: Meta's code, subcode, HTTP status and ``is_transient`` -> action."""
    code = error.code
    if error.status == HTTP_TOO_MANY_REQUESTS or code in THROTTLE_CODES:
        return Action.WAIT
    if error.subcode in UNSERVABLE_OBJECT_SUBCODES:
        return Action.SKIP_OBJECT
    if REDUCE_DATA_TEXT in error.message.lower():
        return Action.SHRINK
    if code in AUTH_CODES:
        return Action.AUTH
    if code in PERMISSION_CODES:
        return Action.PERMISSION
    if code == CURSOR_CODE:
        return Action.RESTART
    if code == REPORT_RUN_LOST_CODE:
        return Action.RESUBMIT
    if error.is_transient or code in TRANSIENT_CODES:
        return Action.RETRY
    if code is None and error.status >= HTTP_SERVER_ERROR:
        return Action.RETRY
    return Action.FATAL


class ThrottledError(RetriableAPIError):
    """Meta is rate limiting; ``wait_seconds`` is its own hint when it gave one."""

    def __init__(self, error: GraphError, wait_seconds: float | None) -> None:
        super().__init__(error.describe())
        self.error = error
        self.wait_seconds = wait_seconds


class TransientError(RetriableAPIError):
    """A fault worth retrying with exponential backoff."""

    def __init__(self, reason: str, message: str, error: GraphError | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.error = error


class PageTooLargeError(RetriableAPIError):
    """Meta asked for less data per call: the caller halves the page size and retries."""

    def __init__(self, error: GraphError) -> None:
        super().__init__(error.describe())
        self.error = error


class UnservableObjectError(FatalAPIError):
    """Meta cannot serve one object of the page (e.g. an incomplete creative); the rest can be read around it."""

    def __init__(self, error: GraphError) -> None:
        super().__init__(error.describe())
        self.error = error


class CursorRejectedError(FatalAPIError):
    """A saved paging cursor was refused; the partition restarts from its bookmark."""

    def __init__(self, error: GraphError) -> None:
        super().__init__(error.describe())
        self.error = error


class ReportRunLostError(FatalAPIError):
    """A report run's results cannot be read (2601); the insights stream submits the report again."""

    def __init__(self, error: GraphError) -> None:
        super().__init__(error.describe())
        self.error = error


class GraphAPIError(FatalAPIError):
    """An error the run cannot get past; its text is the one line the operator sees."""

    def __init__(self, message: str, error: GraphError | None = None) -> None:
        super().__init__(message)
        self.error = error


#: Errors that concern one ad account, not the run: the account's partitions end, every other account and
#: stream goes on (``client.GraphStream.account_failed``). Agencies lose access to a client's account or see
#: one disabled every week; such an answer comes on the account's first call of every stream, so the table is
#: keyed by what Meta says, never by the stream. ``None`` as subcode: any subcode of the code.
#: - ``(#100)`` subcode 33, "Unsupported get request. Object with ID 'act_...' does not exist, cannot be loaded
#:   due to missing permissions, or does not support this operation" (facebook/facebook-php-business-sdk#268,
#:   #424: the token no longer sees the account);
#: - ``(#10)`` and ``(#200)``-``(#299)``: a permission missing on the account ("Ad account owner has NOT
#:   grant ads_management or ads_read permission"; arsduo/koala#693 for #200 on insights);
#: - ``(#368)``: the account was blocked or disabled for policy; the token itself stays valid
#:   (pipeboard-co/meta-ads-mcp#134 tells it apart from an expired token for that reason).
#: Token-wide errors (190 and its subcodes: an expired or revoked token) are not here: every account would
#: fail the same way, so they still stop the run at once.
ACCOUNT_SCOPED: dict[tuple[int, int | None], str] = {
    (100, 33): "the ad account does not exist or this token cannot read it",
    (10, None): "permission denied on this ad account",
    **{(code, None): "a permission is missing on this ad account" for code in range(200, 300)},
    (368, None): "the ad account is blocked or disabled by Meta",
}


def account_scope_reason(error: GraphError | None) -> str | None:
    """Why an error concerns one ad account only (``ACCOUNT_SCOPED``), or ``None`` when it concerns the run."""
    if error is None or error.code is None:
        return None
    reason = ACCOUNT_SCOPED.get((error.code, error.subcode)) or ACCOUNT_SCOPED.get((error.code, None))
    return f"{reason} ({error.code_label}: {error.message or 'no message'})" if reason else None


class AccountSkippedError(FatalAPIError):
    """A partition of an account that failed earlier in the run: not read (its one ERROR line is out)."""

    def __init__(self, account_id: str) -> None:
        super().__init__(f"ad account act_{account_id} failed earlier in this run")
        self.account_id = account_id


def raise_for_error(error: GraphError, wait_hint: float | None) -> None:
    """Raise the exception that carries ``error``'s action. Always raises."""
    action = classify(error)
    if action is Action.WAIT:
        raise ThrottledError(error, wait_hint)
    if action is Action.SHRINK:
        raise PageTooLargeError(error)
    if action is Action.RETRY:
        raise TransientError(error.code_label, error.describe(), error)
    if action is Action.RESTART:
        raise CursorRejectedError(error)
    if action is Action.RESUBMIT:
        raise ReportRunLostError(error)
    if action is Action.SKIP_OBJECT:
        raise UnservableObjectError(error)
    if action is Action.AUTH:
        raise GraphAPIError(
            f"The access token is invalid or expired ({error.describe()}). Generate a new long-lived "
            "token (Business Manager system user, or Graph API Explorer + oauth/access_token exchange) "
            "with ads_read, and set access_token.",
            error,
        )
    if action is Action.PERMISSION:
        raise GraphAPIError(
            f"Permission missing ({error.describe()}). The token's user or system user needs the "
            "ads_read permission (ads_management for some fields) on this ad account.",
            error,
        )
    if error.code == RETENTION_CODE:
        raise GraphAPIError(
            f"Meta keeps 37 months of insights and refused a report's start ({error.describe()}): "
            "check start_date, end_date and the state's bookmark, and that this machine's clock is right "
            "(days count in the ad account's time zone)",
            error,
        )
    raise GraphAPIError(error.describe(), error)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Parse ``Retry-After``: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def connect_failure(exception: BaseException | None) -> str | None:
    """Why no connection to the API could be opened at all, or ``None`` for any other fault.

    "name not resolved", "connection refused", "connect timed out": the request never reached
    a server. A connection that was opened and then reset, a timeout while reading, an HTTP
    error: ``None``, those are faults of a server that exists. requests wraps urllib3's error
    as ``ConnectionError(MaxRetryError(reason=NewConnectionError(...)))``; the chain is walked.
    """
    seen: set[int] = set()
    pending: list[object] = [exception]
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, NameResolutionError):
            return "name not resolved"
        if isinstance(item, NewConnectionError):
            refused = isinstance(item.__cause__ or item.__context__, ConnectionRefusedError)
            return "connection refused" if refused else "no connection"
        if isinstance(item, ConnectTimeoutError):
            return "connect timed out"
        if isinstance(item, MaxRetryError):
            pending.append(item.reason)
        pending.extend([*item.args, item.__cause__, item.__context__])
    return None


def parse_json_body(text: str) -> object:
    """Parse a body as JSON; ``None`` when it is not JSON (an HTML error page, a truncated body)."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _as_str(value: object) -> str | None:
    return value if isinstance(value, str) else None
