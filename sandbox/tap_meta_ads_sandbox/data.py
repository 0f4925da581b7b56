"""The deterministic data behind the sandbox: ad accounts -> campaigns -> ad sets -> ads.

Why by index: ad ``i`` of account ``a`` is a pure function of ``(seed, a, i)`` plus a small overlay of
mutations, so an account with a million ads costs nothing until a page asks for it, two sandboxes with the
same seed serve the same data, and a test can recompute the ground truth at any time.

The filterable facts of an ad (its effective status and its ``updated_time``) come from cheap integer
hashes, so a page that skips most ads (an incremental filter) does not pay for building every row.
"""

from __future__ import annotations

import bisect
import functools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

_M64 = (1 << 64) - 1
_INDEX_SPREAD = 0x100000001B3  # an ad's hashes mix (seed, account) with index * this + a salt

# Object kinds, the digit after the "12" prefix of every generated id.
KIND_AD = 0
KIND_ADSET = 1
KIND_CAMPAIGN = 2
KIND_CREATIVE = 3
KIND_LABEL = 4
KIND_PIXEL = 5
KIND_IMAGE = 6
KIND_VIDEO = 7
KIND_CUSTOM_CONVERSION = 8
KIND_CUSTOM_AUDIENCE = 9
# Kinds from 10 on are written with the prefix "13" and their last digit (see object_id).
KIND_SAVED_AUDIENCE = 10
KIND_AD_RULE = 11
KIND_ACTIVITY = 12  # activities have no id; the kind only keys their hashes
KIND_MAX = KIND_ACTIVITY

# The hierarchy is derived from the ad index: these many ads per ad set, ad sets per campaign.
ADS_PER_ADSET = 6
ADSETS_PER_CAMPAIGN = 5

EFFECTIVE_STATUSES: tuple[str, ...] = (
    "ACTIVE",
    "PAUSED",
    "DELETED",
    "PENDING_REVIEW",
    "DISAPPROVED",
    "PREAPPROVED",
    "PENDING_BILLING_INFO",
    "CAMPAIGN_PAUSED",
    "ARCHIVED",
    "ADSET_PAUSED",
    "IN_PROCESS",
    "WITH_ISSUES",
)
HIDDEN_BY_DEFAULT: frozenset[str] = frozenset({"ARCHIVED", "DELETED"})
DEFAULT_VISIBLE: frozenset[str] = frozenset(EFFECTIVE_STATUSES) - HIDDEN_BY_DEFAULT

# Share of the ads that are neither ARCHIVED nor DELETED, by effective status (cumulative thresholds).
_LIVE_STATUS_MIX: tuple[tuple[float, str], ...] = (
    (0.60, "ACTIVE"),
    (0.80, "PAUSED"),
    (0.87, "CAMPAIGN_PAUSED"),
    (0.92, "ADSET_PAUSED"),
    (0.95, "WITH_ISSUES"),
    (0.97, "DISAPPROVED"),
    (0.99, "PENDING_REVIEW"),
    (1.01, "IN_PROCESS"),
)

_LIVE_THRESHOLDS = tuple(threshold for threshold, _ in _LIVE_STATUS_MIX)
_LIVE_STATUSES = tuple(status for _, status in _LIVE_STATUS_MIX)

# status / configured_status that go with an effective status: Meta derives effective from configured.
_CONFIGURED_FOR: dict[str, str] = {
    "PAUSED": "PAUSED",
    "ARCHIVED": "ARCHIVED",
    "DELETED": "DELETED",
}

# How many base effective statuses an account memoises: two of the largest pages, so a page's selection
# and its serialisation share the work even when two clients page at once (about 1 MB per account).
STATUS_CACHE_SIZE = 10_000

# How many ad sets' shared members an account memoises: the largest page (5,000 ads) spans 834 ad sets.
ADSET_CACHE_SIZE = 1_024

# Generated times fall in 2023-01-01 .. 2025-12-31 (UTC), always in the past.
_T_START = 1672531200
_T_CREATED_END = 1751241600  # 2025-06-30
_T_END = 1767139200  # 2025-12-31

#: The UTC offsets of the sandbox's account time zones (one per account, by a hash of its key; ``SandboxConfig.
#: time_zones`` chooses one). Meta cuts insights days in the account's time zone (``timezone_name``), so the
#: set includes both ends of the world: UTC+14 (Pacific/Kiritimati), whose today starts while it is still
#: yesterday in UTC, and UTC-11 (Pacific/Pago_Pago), whose today has not begun when UTC's has.
_TZ_OFFSETS: tuple[tuple[int, str], ...] = (
    (-7 * 3600, "-0700"),
    (-8 * 3600, "-0800"),
    (0, "+0000"),
    (3600, "+0100"),
    (19800, "+0530"),
    (14 * 3600, "+1400"),
    (-11 * 3600, "-1100"),
)
#: Ad sets' attribution settings (``attribution_spec`` on the ad set, ``attribution_setting`` on its
#: insights rows): Meta's default 7-day click + 1-day view, and the other settings Ads Manager offers.
ATTRIBUTION_SETTINGS: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = (
    ("7d_click_1d_view", (("CLICK_THROUGH", 7), ("VIEW_THROUGH", 1))),
    ("1d_click", (("CLICK_THROUGH", 1),)),
    ("7d_click", (("CLICK_THROUGH", 7),)),
    ("1d_click_1d_view", (("CLICK_THROUGH", 1), ("VIEW_THROUGH", 1))),
)


def attribution_of(adset_index: int) -> tuple[str, tuple[tuple[str, int], ...]]:
    """Ad set ``adset_index``'s attribution setting: its name and its spec (event type, days)."""
    return ATTRIBUTION_SETTINGS[0 if adset_index % 3 else (adset_index // 3) % len(ATTRIBUTION_SETTINGS)]


#: Offset (seconds) of each UTC offset suffix the sandbox knows, for ``set_utc_offset``.
TZ_SUFFIXES: dict[int, str] = dict(_TZ_OFFSETS)

AD_FIELDS: tuple[str, ...] = (
    "account_id",
    "ad_active_time",
    "ad_review_feedback",
    "ad_schedule_end_time",
    "ad_schedule_start_time",
    "adlabels",
    "adset",
    "adset_id",
    "bid_amount",
    "bid_info",
    "bid_type",
    "campaign",
    "campaign_id",
    "configured_status",
    "conversion_domain",
    "conversion_specs",
    "created_time",
    "creative",
    "creative_asset_groups_spec",
    "demolink_hash",
    "display_sequence",
    "effective_status",
    "engagement_audience",
    "failed_delivery_checks",
    "id",
    "issues_info",
    "last_updated_by_app_id",
    "name",
    "placement",
    "preview_shareable_link",
    "priority",
    "recommendations",
    "source_ad",
    "source_ad_id",
    "special_ad_categories",
    "status",
    "targeting",
    "tracking_specs",
    "updated_time",
)

_THEMES = ("Spring Sale", "Retargeting", "Lookalike", "Brand", "Video Views", "Catalog", "Lead Form")
_COUNTRIES = ("US", "GB", "DE", "FR", "BR", "IN", "CA", "AU", "ES", "NL")
_BID_TYPES = ("ABSOLUTE_OCPM", "CPC", "CPM", "MULTI_PREMIUM")
_PLATFORMS = ("audience_network", "facebook", "instagram", "messenger")
_EVER_ACTIVE = frozenset({"ACTIVE", "PAUSED", "CAMPAIGN_PAUSED", "ADSET_PAUSED", "ARCHIVED", "DELETED"})
_INTERESTS = (
    ("6003139266461", "Movies"),
    ("6003020834693", "Music"),
    ("6003107902433", "Association football (Soccer)"),
    ("6003384248805", "Fitness and wellness"),
    ("6003277229526", "Online shopping"),
)

# Precomputed JSON pieces the rows pick from by a hash, so a row does not format them again.
_PLATFORM_LISTS: tuple[str, ...] = tuple(
    ",".join(f'"{p}"' for bit, p in enumerate(_PLATFORMS) if mask >> bit & 1) for mask in range(1 << len(_PLATFORMS))
)
_PLACEMENT_MEMBERS = tuple(f'"placement":{{"publisher_platforms":[{p}]}}' for p in _PLATFORM_LISTS)
_INTEREST_SPECS: tuple[str, ...] = tuple(f'{{"id":"{i}","name":"{n}"}}' for i, n in _INTERESTS)
# The status, configured_status and effective_status members of an ad, by its effective status.
_STATUS_MEMBERS: dict[str, tuple[str, str, str]] = {
    s: (
        f'"status":"{_CONFIGURED_FOR.get(s, "ACTIVE")}"',
        f'"configured_status":"{_CONFIGURED_FOR.get(s, "ACTIVE")}"',
        f'"effective_status":"{s}"',
    )
    for s in EFFECTIVE_STATUSES
}
_DISPLAY_SEQUENCE = tuple(f'"display_sequence":{n}' for n in range(ADS_PER_ADSET))
# Members every ad has unless it says otherwise: optional fields absent ("" is left out of a row), and the
# empty lists and zero values Meta sends for an ad without issues, checks, a source ad or categories.
_OPTIONAL_ABSENT: dict[str, str] = {
    "ad_active_time": "",
    "ad_review_feedback": "",
    "ad_schedule_start_time": "",
    "ad_schedule_end_time": "",
    "adlabels": "",
    "source_ad": "",
    "creative_asset_groups_spec": "",
    "recommendations": "",
    "failed_delivery_checks": '"failed_delivery_checks":[]',
    "issues_info": '"issues_info":[]',
    "priority": '"priority":0',
    "source_ad_id": '"source_ad_id":"0"',
    "special_ad_categories": '"special_ad_categories":[]',
}
# The order the ground truth (``row``) lists an ad's fields in: always-present fields, then optional ones.
_TRUTH_ORDER = itemgetter(
    *"""id account_id name adset adset_id campaign campaign_id creative status configured_status effective_status
    created_time updated_time bid_amount bid_type bid_info conversion_domain conversion_specs tracking_specs
    demolink_hash display_sequence engagement_audience failed_delivery_checks issues_info last_updated_by_app_id
    placement preview_shareable_link priority source_ad_id special_ad_categories targeting ad_active_time
    ad_review_feedback ad_schedule_start_time ad_schedule_end_time adlabels source_ad creative_asset_groups_spec
    recommendations""".split()  # noqa: SIM905 - 39 names read better as words than as a 39-line literal
)
_ENGAGEMENT_AUDIENCE = ('"engagement_audience":false', '"engagement_audience":true')


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


# Constant JSON fragments of the optional fields.
_ISSUES_INFO = _json(
    [
        {
            "level": "AD",
            "error_code": 1815869,
            "error_summary": "Ad Account Has Unpaid Balance",
            "error_message": "The ad account has an outstanding balance.",
            "error_type": "HARD_ERROR",
        }
    ]
)
_FAILED_CHECKS = _json(
    [
        {
            "summary": "Payment method required",
            "description": "Add a payment method to the ad account.",
            "check_name": "billing_check",
        }
    ]
)
_REVIEW_FEEDBACK = _json({"global": {"Circumventing Systems": "Ads must not try to circumvent our review systems."}})
_RECOMMENDATIONS = _json(
    [
        {
            "title": "Use more placements",
            "message": "Ads that use Advantage+ placements often cost less per result.",
            "code": 1912001,
            "importance": "MEDIUM",
            "confidence": "HIGH",
            "blame_field": "targeting",
        }
    ]
)


def mix64(x: int) -> int:
    """Splitmix64 finaliser: a cheap, well-spread hash of an integer, the basis of 'by index' data."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def object_id(kind: int, account_id: str, index: int) -> str:
    """Return the digit-string id of object ``index`` of ``kind`` in ``account_id``.

    Layout ``1F K LL <account digits> <index, 9 digits>`` (18 digits for a 4-digit account), ``F`` being 2 for
    kinds 0-9 and 3 for kinds 10-19 (``K`` their last digit): globally unique, because the account id is
    embedded with its length, and decodable by :func:`parse_object_id`.
    """
    family, digit = divmod(kind, 10)
    return f"1{2 + family}{digit}{len(account_id):02d}{account_id}{index:09d}"


_INDEX_DIGITS = 9
_MIN_ID_LEN = 5 + 1 + _INDEX_DIGITS


def parse_object_id(oid: str) -> tuple[int, str, int] | None:
    """Invert :func:`object_id`; ``None`` for anything the sandbox did not generate."""
    if not oid.isdigit() or len(oid) < _MIN_ID_LEN or oid[:2] not in ("12", "13"):
        return None
    kind = 10 * (int(oid[1]) - 2) + int(oid[2])
    n = int(oid[3:5])
    account = oid[5 : 5 + n]
    rest = oid[5 + n :]
    if len(account) != n or len(rest) != _INDEX_DIGITS:
        return None
    return kind, account, int(rest)


@functools.lru_cache(maxsize=4096)
def _date_text(day: int) -> str:
    """``YYYY-MM-DD`` of a day number since the epoch; cached (generated times span about 1,100 days)."""
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86400))


_HOUR_TEXT: tuple[str, ...] = tuple(f"T{h:02d}:" for h in range(24))
_MINUTE_SECOND_TEXT: tuple[str, ...] = tuple(f"{m:02d}:{s:02d}" for m in range(60) for s in range(60))


def format_time(epoch: int, offset: int, suffix: str) -> str:
    """Format like Meta: local time of the account with its numeric offset, ``2023-03-21T22:41:46-0700``.

    Assembled from a cached date and two small tables instead of ``strftime(gmtime(...))``: the same text
    (UTC has no leap seconds in Python) at a quarter of the cost, on the per-row hot path.
    """
    day, seconds = divmod(epoch + offset, 86400)
    hour, seconds = divmod(seconds, 3600)
    return f"{_date_text(day)}{_HOUR_TEXT[hour]}{_MINUTE_SECOND_TEXT[seconds]}{suffix}"


def page_id_of(account_key: int) -> str:
    """The Facebook page an account's ads and creatives speak for (one per account)."""
    return str(100000000000000 + account_key % 900000000000000)


@dataclass
class AdOverride:
    """What mutations changed about one ad; everything else stays a function of its index."""

    updated: int
    effective_status: str | None = None
    revision: int = 0
    created: int | None = None


@dataclass(frozen=True)
class MutationResult:
    """The ids a mutation touched, in the order it touched them."""

    updated: list[str]
    created: list[str]
    deleted: list[str]

    def as_dict(self) -> dict[str, list[str]]:
        """Return the control endpoint's JSON shape."""
        return {"updated": self.updated, "created": self.created, "deleted": self.deleted}


class IndexedCollection:
    """The objects of one edge of one ad account, addressed by index (the edge's stable order).

    The edge protocol the server pages over (see :class:`~tap_meta_ads_sandbox.edges.Collection`):
    :attr:`count`, :meth:`effective_status`, :meth:`updated_epoch`, :meth:`members` and :meth:`row`. An object
    is a pure function of ``(seed, account, kind, index)`` plus a small overlay of mutations (``overrides``);
    subclasses only say what an object looks like (``members``) and which statuses it can have.

    ``status_param``: the query parameter Meta's edge takes to choose statuses (``effective_status`` for ads,
    ad sets and campaigns; ``None`` for edges that take none, where the sandbox refuses it).
    ``default_visible``: what the edge lists when no status is asked for. ``filter_fields``: the fields the
    edge's ``filtering`` accepts (``updated_time``, ``effective_status``); empty for edges that take none.
    """

    node_type = "Ad"
    filter_prefix = "ad"
    kind = KIND_AD
    fields: tuple[str, ...] = ()
    status_param: str | None = "effective_status"
    filter_fields: frozenset[str] = frozenset({"updated_time", "effective_status"})
    #: Every value of the object's status (what the status param and filters accept), and the default view.
    statuses: tuple[str, ...] = EFFECTIVE_STATUSES
    default_visible: frozenset[str] = DEFAULT_VISIBLE
    #: Status of a deleted / archived object (``None``: the object type has no such status).
    deleted_status: str | None = "DELETED"
    archived_status: str | None = "ARCHIVED"
    #: Statuses of objects that are neither archived nor deleted: cumulative thresholds and their statuses.
    live_thresholds: tuple[float, ...] = _LIVE_THRESHOLDS
    live_statuses: tuple[str, ...] = _LIVE_STATUSES
    #: Whether the edge takes Meta's time-range parameters ``since``/``until`` (on ``updated_epoch``).
    time_params: bool = False
    #: Whether some objects cannot be served with some fields (see :meth:`refusal`): checked per page only then.
    may_refuse: bool = False

    def __init__(
        self,
        seed: int,
        account_id: str,
        base_count: int,
        archived_ratio: float,
        deleted_ratio: float,
    ) -> None:
        self.seed = seed
        self.account_id = account_id
        self.base_count = base_count
        self.archived_ratio = archived_ratio if self.archived_status else 0.0
        self.deleted_ratio = deleted_ratio if self.deleted_status else 0.0
        self.created_count = 0
        self.overrides: dict[int, AdOverride] = {}
        account_key = mix64(mix64(seed & _M64) ^ int(account_id))
        # ads keep the key they always had; every other kind mixes its kind in, so their hashes differ
        self._key = account_key if self.kind == KIND_AD else mix64(account_key ^ (self.kind * _INDEX_SPREAD))
        self._account_key = account_key
        self._tz_offset, self._tz_suffix = _TZ_OFFSETS[account_key % len(_TZ_OFFSETS)]
        # Per instance, so the cache dies with the collection; lru_cache is thread-safe and bounded.
        self._cached_base_status = functools.lru_cache(maxsize=STATUS_CACHE_SIZE)(self._compute_base_effective_status)
        self._id_prefix = tuple(object_id(kind, account_id, 0)[:-_INDEX_DIGITS] for kind in range(KIND_MAX + 1))

    @property
    def utc_offset_seconds(self) -> int:
        """The account's UTC offset (its time zone has no daylight saving time): its objects' times and days."""
        return self._tz_offset

    def set_utc_offset(self, offset: int) -> None:
        """Put the account in another of the sandbox's time zones (before any request is served)."""
        self._tz_offset, self._tz_suffix = offset, TZ_SUFFIXES[offset]

    @property
    def count(self) -> int:
        """Number of objects ever created in the account (visible or not): the edge's positions."""
        return self.base_count + self.created_count

    @property
    def live(self) -> frozenset[str]:
        """Statuses of objects a mutation may pick: visible by default, neither archived nor deleted."""
        return self.default_visible - {self.archived_status, self.deleted_status}

    def _h(self, index: int, salt: int) -> int:
        return mix64(self._key ^ (index * _INDEX_SPREAD + salt))

    def base_effective_status(self, index: int) -> str:
        """Status before mutations: a pure function of the index and the configured ratios.

        Memoised for the last :data:`STATUS_CACHE_SIZE` indexes (see ``__init__``): a page reads the status
        of each position twice, once to select it and once to write it, and the hashes are the costly part.
        """
        return self._cached_base_status(index)

    def _compute_base_effective_status(self, index: int) -> str:
        # With no ARCHIVED or DELETED share (as in benchmarks) the first draw cannot matter: u >= 0.
        if self.deleted_ratio or self.archived_ratio:
            u = self._h(index, 1) / 18446744073709551616.0
            if u < self.deleted_ratio:
                return self.deleted_status or ""
            if u < self.deleted_ratio + self.archived_ratio:
                return self.archived_status or ""
        v = self._h(index, 2) / 18446744073709551616.0
        # The first status whose cumulative threshold is above v.
        return self.live_statuses[bisect.bisect_right(self.live_thresholds, v)]

    def effective_status(self, index: int) -> str:
        """Current status of object ``index``."""
        ov = self.overrides.get(index)
        if ov is not None and ov.effective_status is not None:
            return ov.effective_status
        return self._cached_base_status(index)  # base_effective_status without one call layer (hot path)

    def base_times(self, index: int) -> tuple[int, int]:
        """(created, updated) epochs before mutations; updated spreads independently of the index."""
        h = self._h(index, 3)
        created = _T_START + h % (_T_CREATED_END - _T_START)
        updated = created + (h >> 32) % (_T_END - created)
        return created, updated

    def times(self, index: int) -> tuple[int, int, int]:
        """(created, updated, revision) after mutations."""
        created, updated = self.base_times(index)
        ov = self.overrides.get(index)
        if ov is None:
            return created, updated, 0
        return (created if ov.created is None else ov.created), ov.updated, ov.revision

    def updated_epoch(self, index: int) -> int:
        """Current ``updated_time`` of object ``index`` as a Unix epoch."""
        ov = self.overrides.get(index)
        if ov is not None:
            return ov.updated
        return self.base_times(index)[1]

    def id_of(self, index: int) -> str:
        """The object's id."""
        return object_id(self.kind, self.account_id, index)

    def index_of(self, oid: str) -> int | None:
        """Index of an object id of this account and kind, or ``None``."""
        parsed = parse_object_id(oid)
        if parsed is None or parsed[0] != self.kind or parsed[1] != self.account_id:
            return None
        return parsed[2] if parsed[2] < self.count else None

    def row(self, index: int) -> dict[str, Any]:
        """The full object as a dict (every field it has a value for): the ground truth tests compare with."""
        members = self.members(index)
        parsed: dict[str, Any] = json.loads("{" + ",".join(filter(None, (members[f] for f in self.fields))) + "}")
        return parsed

    def members(self, index: int) -> dict[str, str]:
        """The object as ``{field: JSON member text}`` (``""`` when it has no value): pages are joined from these."""
        raise NotImplementedError

    def refusal(self, index: int, fields: tuple[str, ...]) -> Exception | None:
        """The error Meta answers when object ``index`` is asked for with ``fields`` (``None``: it is served)."""
        return None

    def iter_visible(self, statuses: frozenset[str]) -> Iterator[int]:
        """Indexes (in edge order) whose status is in ``statuses``."""
        for i in range(self.count):
            if self.effective_status(i) in statuses:
                yield i


class AdCollection(IndexedCollection):
    """The ads of one ad account: Meta's Ad, generated as JSON member texts for speed (the hot path)."""

    node_type = "Ad"
    filter_prefix = "ad"
    kind = KIND_AD
    fields: tuple[str, ...] = AD_FIELDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - IndexedCollection's signature
        super().__init__(*args, **kwargs)
        account_id = self.account_id
        self._adset_members = functools.lru_cache(maxsize=ADSET_CACHE_SIZE)(self._format_adset_members)
        # What is the same for every ad of the account is formatted once, here, not once per row.
        pixel_spec = f'{{"action.type":["offsite_conversion"],"fb_pixel":["{object_id(KIND_PIXEL, account_id, 0)}"]}}'
        page_id = page_id_of(self._key)
        app_id = 1000000000000 + (self._key >> 20) % 9000000000000
        self._account_member = f'"account_id":"{account_id}"'
        self._app_member = f'"last_updated_by_app_id":"{app_id}"'
        self._conversion_specs_member = f'"conversion_specs":[{pixel_spec}]'
        self._tracking_specs_head = (
            f'"tracking_specs":[{pixel_spec},{{"action.type":["post_engagement"],"page":["{page_id}"],"post":["'
        )

    def row(self, index: int) -> dict[str, Any]:
        """The full ad as a dict (every field it has a value for): the ground truth tests compare with."""
        members = _TRUTH_ORDER(self.members(index))
        parsed: dict[str, Any] = json.loads("{" + ",".join(filter(None, members)) + "}")
        return parsed

    def members(self, index: int) -> dict[str, str]:
        """The full ad as ``{field: JSON member text}``, e.g. ``{"priority": '"priority":0'}``, in Meta's shapes.

        Why member text and not a dict: a page is assembled by joining these members, several times faster
        than building nested dicts and serialising them, which keeps the sandbox from being the bottleneck of
        a benchmark. The key is part of the text so that projecting a row onto the asked fields is a C-level
        ``join`` (see :func:`~tap_meta_ads_sandbox.edges.member_getter`), not one string concatenation per
        field. Every field of :data:`AD_FIELDS` is a key; an optional field the ad has no value for maps to
        ``""`` (Meta leaves it out, and so does the join). Every generated string is plain ASCII without
        quotes or backslashes, so it is quoted without escaping. All variation comes from a few hashes of the
        index; what an ad shares with its ad set comes ready-made from :meth:`_format_adset_members`.
        """
        status = self.effective_status(index)
        created, updated = self.base_times(index)
        revision = 0
        ov = self.overrides.get(index)
        if ov is not None:
            updated = ov.updated
            revision = ov.revision
            if ov.created is not None:
                created = ov.created
        ha, hb, hc = self._h(index, 4), self._h(index, 5), self._h(index, 6)
        off, suf = self._tz_offset, self._tz_suffix
        shared, theme, bid_info_head, adlabels = self._adset_members(index // ADS_PER_ADSET)
        status_member, configured_member, effective_member = _STATUS_MEMBERS[status]
        country = _COUNTRIES[ha % len(_COUNTRIES)]
        bid_amount = 50 + (ha >> 8) % 4950 + 10 * revision
        name = f"{theme} - {country} - Ad {index + 1}"
        if revision:
            name += f" (rev {revision})"
        platform_mask = (ha >> 24) % 15 + 1
        platforms = _PLATFORM_LISTS[platform_mask]
        age_min = 18 + (ha >> 32) % 12
        age_max = 65 if (ha >> 40) & 1 else age_min + 10 + (ha >> 41) % 20
        genders = f"[{1 + ((ha >> 46) & 1)}]" if (ha >> 47) % 10 < 3 else "[]"  # noqa: PLR2004 - 3 in 10
        ad = {
            **shared,
            "id": f'"id":"{self._id_prefix[KIND_AD]}{index:09d}"',
            "name": f'"name":"{name}"',
            "creative": f'"creative":{{"id":"{self._id_prefix[KIND_CREATIVE]}{index:09d}"}}',
            "status": status_member,
            "configured_status": configured_member,
            "effective_status": effective_member,
            "created_time": f'"created_time":"{format_time(created, off, suf)}"',
            "updated_time": f'"updated_time":"{format_time(updated, off, suf)}"',
            "bid_amount": f'"bid_amount":{bid_amount}',
            "bid_info": f"{bid_info_head}{bid_amount}}}",
            "tracking_specs": f'{self._tracking_specs_head}{10**15 + hb % 10**15}"]}}]',
            "demolink_hash": f'"demolink_hash":"{hc:016x}"',
            "display_sequence": _DISPLAY_SEQUENCE[index % ADS_PER_ADSET],
            "engagement_audience": _ENGAGEMENT_AUDIENCE[(ha >> 36) % 10 == 0],
            "placement": _PLACEMENT_MEMBERS[platform_mask],
            "preview_shareable_link": f'"preview_shareable_link":"https://fb.me/{hb >> 24:010x}"',
            "targeting": f'"targeting":{{"age_min":{age_min},"age_max":{age_max},"genders":{genders},'
            f'"geo_locations":{{"countries":["{country}"],"location_types":["home","recent"]}},'
            f'"publisher_platforms":[{platforms}],'
            f'"flexible_spec":[{{"interests":[{_INTEREST_SPECS[(ha >> 28) % len(_INTEREST_SPECS)]}]}}],'
            f'"targeting_automation":{{"advantage_audience":{(ha >> 50) & 1}}}}}',
        }
        self._add_optional_fields(ad, hc, index=index, status=status, created=created, name=name, adlabels=adlabels)
        return ad

    def _format_adset_members(self, adset_index: int) -> tuple[dict[str, str], str, str, str]:
        """What the six ads of an ad set share, formatted once: (members, theme, bid_info head, adlabels).

        Memoised per collection as ``_adset_members`` (see ``__init__``): a page of 500 ads spans about 84
        ad sets, so every row starts from a copy of these members (one C-level dict merge) instead of
        formatting them. The members are the account's constants, the ad set's and campaign's ids, and the
        defaults of the optional fields (``""``, absent); the theme starts an ad's name, the ``bid_info``
        member only lacks its amount, and ``adlabels`` is the campaign's label for the ads that carry one.
        """
        campaign_index = adset_index // ADSETS_PER_CAMPAIGN
        adset_id = f"{self._id_prefix[KIND_ADSET]}{adset_index:09d}"
        campaign_id = f"{self._id_prefix[KIND_CAMPAIGN]}{campaign_index:09d}"
        bid_type = _BID_TYPES[campaign_index % len(_BID_TYPES)]
        shared = {
            **_OPTIONAL_ABSENT,
            "account_id": self._account_member,
            "adset": f'"adset":{{"id":"{adset_id}"}}',
            "adset_id": f'"adset_id":"{adset_id}"',
            "campaign": f'"campaign":{{"id":"{campaign_id}"}}',
            "campaign_id": f'"campaign_id":"{campaign_id}"',
            "bid_type": f'"bid_type":"{bid_type}"',
            "conversion_domain": f'"conversion_domain":"shop{campaign_index % 97}.example.com"',
            "conversion_specs": self._conversion_specs_member,
            "last_updated_by_app_id": self._app_member,
        }
        bid_info_head = f'"bid_info":{{"{"IMPRESSIONS" if bid_type == "CPM" else "ACTIONS"}":'
        label = campaign_index % 50  # one label per campaign, 50 labels per account
        stamp = format_time(_T_START + label * 86400, self._tz_offset, self._tz_suffix)
        adlabels = (
            f'"adlabels":[{{"id":"{self._id_prefix[KIND_LABEL]}{label:09d}","name":"label-{label}",'
            f'"created_time":"{stamp}","updated_time":"{stamp}"}}]'
        )
        return shared, _THEMES[campaign_index % len(_THEMES)], bid_info_head, adlabels

    def _add_optional_fields(
        self, ad: dict[str, str], h: int, *, index: int, status: str, created: int, name: str, adlabels: str
    ) -> None:
        """Fields only some ads have a value for (as member text); Meta leaves them out otherwise."""
        off, suf = self._tz_offset, self._tz_suffix
        roll = (h >> 8) % 1000
        if status in _EVER_ACTIVE:
            ad["ad_active_time"] = f'"ad_active_time":"{3600 + (h >> 20) % (3600 * 24 * 400)}"'
        if status == "WITH_ISSUES":
            ad["issues_info"] = f'"issues_info":{_ISSUES_INFO}'
            ad["failed_delivery_checks"] = f'"failed_delivery_checks":{_FAILED_CHECKS}'
        if status == "DISAPPROVED":
            ad["ad_review_feedback"] = f'"ad_review_feedback":{_REVIEW_FEEDBACK}'
        if roll < 100:  # noqa: PLR2004 - one ad in ten is scheduled
            ad["ad_schedule_start_time"] = f'"ad_schedule_start_time":"{format_time(created + 86400, off, suf)}"'
            ad["ad_schedule_end_time"] = f'"ad_schedule_end_time":"{format_time(created + 86400 * 30, off, suf)}"'
        if roll < 200:  # noqa: PLR2004 - one ad in five carries its campaign's label
            ad["adlabels"] = adlabels
        if 200 <= roll < 300 and index > 0:  # noqa: PLR2004 - one ad in ten is a copy of an earlier ad
            source = f"{self._id_prefix[KIND_AD]}{(h >> 32) % index:09d}"
            ad["source_ad_id"] = f'"source_ad_id":"{source}"'
            ad["source_ad"] = f'"source_ad":{{"id":"{source}"}}'
        if 300 <= roll < 350:  # noqa: PLR2004 - a few ads use asset groups and get recommendations
            ad["creative_asset_groups_spec"] = (
                f'"creative_asset_groups_spec":{{"groups":[{{"group_id":"{h >> 16}","texts":[{{"text":"{name}"}}]}}]}}'
            )
            ad["recommendations"] = f'"recommendations":{_RECOMMENDATIONS}'
