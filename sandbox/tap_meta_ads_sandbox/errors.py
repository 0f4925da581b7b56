"""Meta's Graph API error bodies, built in one place.

Every error the sandbox answers with goes through :class:`GraphError`, so the body always has Meta's shape
(``{"error": {"message", "type", "code", "error_subcode", ..., "fbtrace_id"}}``) and a client under test
can classify it exactly as it would classify a real one.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

_trace_counter = itertools.count(1)
_trace_lock = threading.Lock()


def fbtrace_id() -> str:
    """Return a unique trace id shaped like Meta's (opaque, 23 characters), so logs can quote one."""
    with _trace_lock:
        n = next(_trace_counter)
    return f"ASbx{n:019d}"


class GraphError(Exception):
    """An error answered in Meta's JSON error shape.

    Raised anywhere below the request handler; the handler turns it into the HTTP response. Carrying the
    HTTP status with the body matters because Meta answers most errors with 400, some with 500/503.
    """

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        error_type: str = "OAuthException",
        subcode: int | None = None,
        is_transient: bool | None = None,
        user_title: str | None = None,
        user_msg: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.error_type = error_type
        self.subcode = subcode
        self.is_transient = is_transient
        self.user_title = user_title
        self.user_msg = user_msg
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """Return the JSON body; optional members are left out when unset, as Meta leaves them out."""
        err: dict[str, Any] = {"message": self.message, "type": self.error_type, "code": self.code}
        if self.subcode is not None:
            err["error_subcode"] = self.subcode
        if self.is_transient is not None:
            err["is_transient"] = self.is_transient
        if self.user_title is not None:
            err["error_user_title"] = self.user_title
        if self.user_msg is not None:
            err["error_user_msg"] = self.user_msg
        err["fbtrace_id"] = fbtrace_id()
        return {"error": err}


def invalid_parameter(message: str, *, subcode: int | None = None) -> GraphError:
    """Code 100, Meta's catch-all for a request it understood but will not serve."""
    return GraphError(400, 100, message, subcode=subcode, is_transient=False)


def invalid_token() -> GraphError:
    """Code 190 for an unknown or missing token, worded as Meta words an unparsable token."""
    return GraphError(400, 190, "Invalid OAuth access token - Cannot parse access token", is_transient=False)


def unsupported_get(object_id: str) -> GraphError:
    """Code 100 subcode 33: Meta's answer for an object that does not exist or is not visible to the token."""
    return GraphError(
        400,
        100,
        f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be loaded due to "
        "missing permissions, or does not support this operation. Please read the Graph API documentation "
        "at https://developers.facebook.com/docs/graph-api",
        error_type="GraphMethodException",
        subcode=33,
        is_transient=False,
    )


def reduce_data() -> GraphError:
    """HTTP 500 code 1 "reduce the amount of data": the one error a client must recognise by its text."""
    return GraphError(
        500,
        1,
        "Please reduce the amount of data you're asking for, then retry your request",
        is_transient=False,
    )


INVALID_CURSOR_CODE = 2642
EXPIRED_CURSOR_SUBCODE = 2642001


def invalid_cursor() -> GraphError:
    """Code 2642, the code Meta answers a cursor it cannot decode with."""
    return GraphError(400, INVALID_CURSOR_CODE, "(#2642) Invalid cursors values", is_transient=False)


def expired_cursor() -> GraphError:
    """Code 2642 again, with a sandbox subcode, so a client can tell 'too old' from 'garbage' if it wants.

    Meta documents no separate code for an expired cursor; the right reaction to both is the same
    (start the edge again from the bookmark), so a client should not need the subcode.
    """
    return GraphError(
        400,
        INVALID_CURSOR_CODE,
        "(#2642) Invalid cursors values",
        subcode=EXPIRED_CURSOR_SUBCODE,
        is_transient=False,
        user_title="Cursor expired",
        user_msg="The pagination cursor has expired. Start again from the first page.",
    )
