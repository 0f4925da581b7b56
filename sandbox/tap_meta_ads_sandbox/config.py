"""Every knob of the sandbox in one checked dataclass, shared by the Python API and the CLI."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tap_meta_ads_sandbox.faults import FaultPlan
from tap_meta_ads_sandbox.objects import ZONE_OFFSETS
from tap_meta_ads_sandbox.usage import parse_throttle_code

DEFAULT_LIMIT = 25
#: Meta's AdAccount ``account_status`` codes.
ACCOUNT_STATUS_CODES = frozenset({1, 2, 3, 7, 8, 9, 100, 101})
MAX_LIMIT = 5000
_MAX_ACCOUNT_DIGITS = 99
_MAX_ADS = 10**9


@dataclass(frozen=True)
class SandboxConfig:
    """How the sandbox behaves; checked on construction so a bad value fails before the server starts.

    ``accounts`` maps an ad account id (digits, without ``act_``) to how many ads it starts with.
    ``archived_ratio``/``deleted_ratio`` are the shares of ads that are ARCHIVED/DELETED (chosen by a hash
    of the index, so fixed for a seed). ``page_budget_bytes`` makes a page whose estimated size is larger
    fail with Meta's HTTP 500 "reduce the amount of data". ``empty_page_every=N`` serves every N-th page of
    a pagination run empty but with ``next``. Budgets count calls per ``rate_window_seconds``; over the
    account budget a call gets ``throttle_code``, over the app budget code 4. ``cursor_ttl_seconds``
    makes older cursors fail as expired.
    """

    seed: int = 42
    accounts: Mapping[str, int] = field(default_factory=lambda: {"1001": 3000})
    tokens: tuple[str, ...] = ("sandbox-token",)
    app_secret: str | None = None
    archived_ratio: float = 0.1
    deleted_ratio: float = 0.05
    page_budget_bytes: int | None = None
    empty_page_every: int = 0
    rate_window_seconds: float = 3600.0
    account_budget: int = 100000
    app_budget: int = 1000000
    throttle_code: str = "17/2446079"
    usage_headers: bool = True
    faults: FaultPlan = field(default_factory=FaultPlan)
    latency_seconds: float = 0.0
    cursor_ttl_seconds: float | None = None
    max_limit: int = MAX_LIMIT
    #: Answer gzip-compressed when the request accepts gzip, as Meta's servers do (public SDKs had to learn
    #: to decode it: facebookarchive/facebook-php-sdk#132, amachang/facebook-node-sdk#19). Off by default,
    #: so a benchmark measures its clients, not the sandbox's zlib.
    gzip: bool = False
    #: Close a kept-alive connection after this many idle seconds, as every real server does (``None``:
    #: keep it for as long as the client does), so a client's handling of connections the server has
    #: closed meanwhile can be shown.
    idle_timeout_seconds: float | None = None
    #: Account id -> time zone name (one of ``objects.ZONE_OFFSETS``: Pacific/Kiritimati at UTC+14,
    #: Pacific/Pago_Pago at UTC-11, America/Phoenix, ...). Unnamed accounts get one by a hash of their key.
    #: The zone is the account's ``timezone_name``, the offset of its objects' times, and the days its
    #: insights are cut in.
    time_zones: Mapping[str, str] = field(default_factory=dict)
    #: The token's own ad accounts (``GET /me/adaccounts``), in listing order; ``None``: every configured one.
    me_accounts: tuple[str, ...] | None = None
    #: Businesses and their accounts: ``{business_id: {"owned": [...], "client": [...]}}`` (the listings
    #: ``/{business_id}/owned_ad_accounts`` and ``/{business_id}/client_ad_accounts``).
    businesses: Mapping[str, Mapping[str, tuple[str, ...] | list[str]]] = field(default_factory=dict)
    #: Meta's ``account_status`` code of each account in the listings (absent: 1, ACTIVE).
    account_statuses: Mapping[str, int] = field(default_factory=dict)
    #: Every N-th creative is "incomplete" (its post was deleted): Meta answers 100/2446289 for any request
    #: that asks it for more than its id, a page that holds it included (0: none).
    incomplete_creative_every: int = 0
    #: Every N-th custom audience has a ``rule`` Meta cannot serve: pages asking for it fail "reduce the
    #: amount of data" whatever their size (0: none).
    heavy_rule_every: int = 0
    #: How long a signed image or thumbnail URL stays valid after the object last changed (``files.py``).
    asset_url_ttl_seconds: float = 20 * 365 * 86400.0
    #: What ``debug_token`` knows of each token, and what the token may do (``tokens.py``): token -> profile
    #: (keys of :class:`~tap_meta_ads_sandbox.tokens.TokenProfile`). A token named here is accepted too.
    token_profiles: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Reject impossible settings with a one-line reason (ValueError, TypeError for a wrong type)."""
        self._check_accounts_and_tokens()
        self._check_numbers()
        parse_throttle_code(self.throttle_code)
        if not isinstance(self.faults, FaultPlan):
            raise TypeError("faults must be a FaultPlan")
        self._check_listings()
        object.__setattr__(self, "accounts", dict(self.accounts))
        object.__setattr__(self, "time_zones", dict(self.time_zones))
        object.__setattr__(self, "tokens", tuple(self.tokens))

    def _check_accounts_and_tokens(self) -> None:
        if not self.accounts:
            raise ValueError("at least one account is required")
        for acct, n in self.accounts.items():
            if not isinstance(acct, str) or not acct.isdigit() or len(acct) > _MAX_ACCOUNT_DIGITS:
                raise ValueError(f"account id must be a digit string without 'act_', got {acct!r}")
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < _MAX_ADS:
                raise ValueError(f"account {acct}: number of ads must be an integer in 0..{_MAX_ADS - 1}")
        for acct, zone in dict(self.time_zones).items():
            if acct not in self.accounts:
                raise ValueError(f"time_zones: {acct!r} is not one of the accounts")
            if zone not in ZONE_OFFSETS:
                raise ValueError(f"time_zones: {zone!r} is not one of {', '.join(sorted(ZONE_OFFSETS))}")
        if isinstance(self.tokens, str):
            raise TypeError("tokens must be a tuple of strings, not one string")
        if not self.tokens or not all(isinstance(t, str) and t for t in self.tokens):
            raise ValueError("at least one non-empty token is required")

    def _check_listings(self) -> None:
        """Every account a listing names is a configured account (the listing serves its node's fields)."""
        listed = list(self.me_accounts or ())
        for business, edges in self.businesses.items():
            if not business.isdigit():
                raise ValueError(f"business id must be a digit string, got {business!r}")
            unknown_edges = set(edges) - {"owned", "client"}
            if unknown_edges:
                raise ValueError(f"business {business}: listings are 'owned' and 'client', not {sorted(unknown_edges)}")
            for ids in edges.values():
                listed += list(ids)
        listed += list(self.account_statuses)
        unknown = [a for a in listed if a not in self.accounts]
        if unknown:
            raise ValueError(f"listed account {unknown[0]!r} is not a configured account")
        bad = {a: s for a, s in self.account_statuses.items() if s not in ACCOUNT_STATUS_CODES}
        if bad:
            raise ValueError(
                f"account_statuses: {bad} are not Meta account_status codes {sorted(ACCOUNT_STATUS_CODES)}"
            )

    def _check_numbers(self) -> None:
        checks: tuple[tuple[bool, str], ...] = (
            (0 <= self.archived_ratio <= 1, "archived_ratio must be between 0 and 1"),
            (0 <= self.deleted_ratio <= 1, "deleted_ratio must be between 0 and 1"),
            (self.archived_ratio + self.deleted_ratio <= 1, "archived_ratio + deleted_ratio must not exceed 1"),
            (self.page_budget_bytes is None or self.page_budget_bytes >= 1, "page_budget_bytes must be >= 1"),
            (self.empty_page_every >= 0, "empty_page_every must be >= 0"),
            (self.rate_window_seconds > 0, "rate_window_seconds must be > 0"),
            (self.account_budget >= 1, "account_budget must be >= 1"),
            (self.app_budget >= 1, "app_budget must be >= 1"),
            (self.latency_seconds >= 0, "latency_seconds must be >= 0"),
            (self.idle_timeout_seconds is None or self.idle_timeout_seconds > 0, "idle_timeout_seconds must be > 0"),
            (self.cursor_ttl_seconds is None or self.cursor_ttl_seconds > 0, "cursor_ttl_seconds must be > 0"),
            (self.max_limit >= 1, "max_limit must be >= 1"),
            (self.incomplete_creative_every >= 0, "incomplete_creative_every must be >= 0"),
            (self.heavy_rule_every >= 0, "heavy_rule_every must be >= 0"),
            (self.asset_url_ttl_seconds > 0, "asset_url_ttl_seconds must be > 0"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
