"""Access tokens as Meta knows them: expiry, data-access expiry, scopes, the accounts they see, inspection.

``GET /debug_token?input_token=...`` (developers.facebook.com/docs/graph-api/reference/debug_token) answers
``{"data": {"app_id", "type", "application", "expires_at", "data_access_expires_at", "is_valid", "issued_at",
"scopes", "granular_scopes", "user_id"}}``; ``expires_at`` 0 means the token never expires (system users). An
expired token is still described, with ``is_valid: false`` and an ``error`` (code 190, subcode 463). Meta only
lets an app token or a token of one of the app's developers inspect a token; anyone else gets code 100. The
input token travels in the query string: it is part of Meta's interface.

A token that is used on the ad account edges answers as Meta does: expired, code 190/463 ("Session has
expired"); without ``ads_read`` or ``ads_management``, code 200 "Ad account owner has NOT granted
ads_management or ads_read permission" (the text public connectors quote, e.g. PostHog/posthog#68230); on an
account it cannot see, code 100/33 "Unsupported get request" (facebook/facebook-php-business-sdk#424).
"""

from __future__ import annotations

import datetime
import threading
from dataclasses import dataclass, field, fields, replace
from typing import Any

from tap_meta_ads_sandbox.errors import GraphError, invalid_token, unsupported_get

ADS_SCOPES = frozenset({"ads_read", "ads_management"})
_DAY = 86400.0


@dataclass(frozen=True)
class TokenProfile:
    """What one token is; times are seconds from when the profile was set (``None``: never expires)."""

    type: str = "USER"
    expires_in_seconds: float | None = 60 * _DAY  # a long-lived user token lasts about 60 days
    data_access_expires_in_seconds: float | None = 90 * _DAY
    scopes: tuple[str, ...] = ("ads_read", "ads_management", "business_management", "read_insights")
    #: Ad accounts (digits) the token sees; ``None``: every account of the sandbox.
    accounts: tuple[str, ...] | None = None
    #: Whether this token may call ``debug_token`` (an app developer's token may; others get code 100).
    can_inspect: bool = True
    #: Fields Meta refuses to this token (its user lacks the permission they need): code 200 for any request
    #: asking for one. Airbyte dropped custom conversions' ``pixel`` for such a refusal (airbytehq/airbyte#18045).
    denied_fields: tuple[str, ...] = ()
    app_id: str = "246813579024680"
    user_id: str = "100001"

    @classmethod
    def from_mapping(cls, doc: Any) -> TokenProfile:  # noqa: ANN401 - JSON in
        """A profile from a JSON object; unknown keys are refused with one line."""
        if not isinstance(doc, dict):
            raise TypeError("a token profile must be an object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ValueError(f"unknown token profile key {unknown[0]!r}; allowed: {', '.join(sorted(known))}")
        values = dict(doc)
        for key in ("scopes", "accounts", "denied_fields"):
            if values.get(key) is not None:
                values[key] = tuple(str(v) for v in values[key])
        return replace(cls(), **values)


@dataclass
class _Token:
    profile: TokenProfile
    issued_at: int
    expires_at: int  # 0: never
    data_access_expires_at: int  # 0: never


@dataclass
class Tokens:
    """Every token the sandbox accepts, with its profile; thread-safe."""

    now: float
    plain: tuple[str, ...]
    profiles: dict[str, TokenProfile] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        for token in self.plain:
            self._set(token, TokenProfile(), self.now)
        for token, profile in self.profiles.items():
            self._set(token, profile, self.now)

    def _set(self, token: str, profile: TokenProfile, now: float) -> None:
        def at(seconds: float | None) -> int:
            return 0 if seconds is None else int(now + seconds)

        self._tokens[token] = _Token(
            profile, int(now), at(profile.expires_in_seconds), at(profile.data_access_expires_in_seconds)
        )

    def set(self, token: str, profile: TokenProfile, now: float) -> None:
        """Add or replace a token (its times count from ``now``)."""
        with self._lock:
            self._set(token, profile, now)

    def known(self, token: str) -> bool:
        """Whether the sandbox issued this token (valid or not)."""
        return token in self._tokens

    def check_use(self, token: str, now: float, account_id: str | None) -> None:
        """Raise Meta's error for a token that may not read this account's data now; pass otherwise."""
        entry = self._tokens.get(token)
        if entry is None:
            raise invalid_token()
        if entry.expires_at and now >= entry.expires_at:
            raise _expired(entry.expires_at, now)
        if entry.data_access_expires_at and now >= entry.data_access_expires_at:
            raise GraphError(
                400, 190, "Error validating access token: data access has expired for this user", subcode=467
            )
        if account_id is None:
            return
        if not ADS_SCOPES & set(entry.profile.scopes):
            raise GraphError(400, 200, "(#200) Ad account owner has NOT granted ads_management or ads_read permission")
        if entry.profile.accounts is not None and account_id not in entry.profile.accounts:
            raise unsupported_get(f"act_{account_id}")

    def check_fields(self, token: str, fields: tuple[str, ...], node_type: str) -> None:
        """Raise Meta's permission error when the token may not read one of these fields; pass otherwise."""
        entry = self._tokens.get(token)
        denied = [f for f in fields if entry is not None and f in entry.profile.denied_fields]
        if denied:
            raise GraphError(
                400,
                200,
                f"(#200) Requires business_management permission to access field ({denied[0]}) on node type "
                f"({node_type})",
            )

    def debug(self, caller: str, input_token: str | None, now: float) -> dict[str, Any]:
        """The ``debug_token`` answer for ``input_token``, asked by ``caller``."""
        entry = self._tokens.get(caller)
        if entry is None:
            raise invalid_token()
        if not entry.profile.can_inspect:
            raise GraphError(
                400,
                100,
                "(#100) You must provide an app access token, or a user access token that is an owner or "
                "developer of the app",
            )
        if not input_token:
            raise GraphError(400, 100, "(#100) The parameter input_token is required")
        target = self._tokens.get(input_token)
        if target is None:
            error = {"code": 190, "message": "Invalid OAuth access token."}
            return {"data": {"error": error, "is_valid": False, "scopes": []}}
        p = target.profile
        data: dict[str, Any] = {
            "app_id": p.app_id,
            "type": p.type,
            "application": "Example Shop Backup",
            "data_access_expires_at": target.data_access_expires_at,
            "expires_at": target.expires_at,
            "is_valid": True,
            "issued_at": target.issued_at,
            "scopes": list(p.scopes),
            "granular_scopes": [
                {"scope": s, **({"target_ids": list(p.accounts)} if p.accounts is not None and s in ADS_SCOPES else {})}
                for s in p.scopes
            ],
            "user_id": p.user_id,
        }
        if target.expires_at and now >= target.expires_at:
            expired = _expired(target.expires_at, now)
            data["is_valid"] = False
            data["error"] = {"code": 190, "message": expired.message, "subcode": 463}
        return {"data": data}


def _expired(expires_at: int, now: float) -> GraphError:
    def text(epoch: float) -> str:
        return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).strftime("%A, %d-%b-%y %H:%M:%S UTC")

    return GraphError(
        400,
        190,
        f"Error validating access token: Session has expired on {text(expires_at)}. The current time is {text(now)}.",
        subcode=463,
        is_transient=False,
    )
