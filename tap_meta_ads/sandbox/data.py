"""The deterministic data behind the sandbox: ad accounts -> campaigns -> ad sets -> ads.

Why by index: ad ``i`` of account ``a`` is a pure function of ``(seed, a, i)`` plus a small overlay of
mutations, so an account with a million ads costs nothing until a page asks for it, two sandboxes with the
same seed serve the same data, and a test can recompute the ground truth at any time.

The filterable facts of an ad (its effective status and its ``updated_time``) come from cheap integer
hashes, so a page that skips most ads (an incremental filter) does not pay for building every row.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

_M64 = (1 << 64) - 1

# Object kinds, the digit after the "12" prefix of every generated id.
KIND_AD = 0
KIND_ADSET = 1
KIND_CAMPAIGN = 2
KIND_CREATIVE = 3
KIND_LABEL = 4
KIND_PIXEL = 5

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

# status / configured_status that go with an effective status: Meta derives effective from configured.
_CONFIGURED_FOR: dict[str, str] = {
    "PAUSED": "PAUSED",
    "ARCHIVED": "ARCHIVED",
    "DELETED": "DELETED",
}

# Generated times fall in 2023-01-01 .. 2025-12-31 (UTC), always in the past.
_T_START = 1672531200
_T_CREATED_END = 1751241600  # 2025-06-30
_T_END = 1767139200  # 2025-12-31

_TZ_OFFSETS: tuple[tuple[int, str], ...] = (
    (-7 * 3600, "-0700"),
    (-8 * 3600, "-0800"),
    (0, "+0000"),
    (3600, "+0100"),
    (19800, "+0530"),
)

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

    Layout ``12 K LL <account digits> <index, 9 digits>`` (18 digits for a 4-digit account): globally
    unique, because the account id is embedded with its length, and decodable by :func:`parse_object_id`.
    """
    return f"12{kind}{len(account_id):02d}{account_id}{index:09d}"


_INDEX_DIGITS = 9
_MIN_ID_LEN = 5 + 1 + _INDEX_DIGITS


def parse_object_id(oid: str) -> tuple[int, str, int] | None:
    """Invert :func:`object_id`; ``None`` for anything the sandbox did not generate."""
    if not oid.isdigit() or len(oid) < _MIN_ID_LEN or not oid.startswith("12"):
        return None
    kind = int(oid[2])
    n = int(oid[3:5])
    account = oid[5 : 5 + n]
    rest = oid[5 + n :]
    if len(account) != n or len(rest) != _INDEX_DIGITS:
        return None
    return kind, account, int(rest)


def format_time(epoch: int, offset: int, suffix: str) -> str:
    """Format like Meta: local time of the account with its numeric offset, ``2023-03-21T22:41:46-0700``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch + offset)) + suffix


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


class AdCollection:
    """The ads of one ad account, addressed by index (the edge's stable order).

    The edge protocol the server pages over: :attr:`count`, :meth:`effective_status`,
    :meth:`updated_epoch` and :meth:`row`. A later edge (campaigns, ad sets, ...) implements the same four.
    """

    node_type = "Ad"
    filter_prefix = "ad"
    fields: tuple[str, ...] = AD_FIELDS

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
        self.archived_ratio = archived_ratio
        self.deleted_ratio = deleted_ratio
        self.created_count = 0
        self.overrides: dict[int, AdOverride] = {}
        self._key = mix64(mix64(seed & _M64) ^ int(account_id))
        self._tz_offset, self._tz_suffix = _TZ_OFFSETS[self._key % len(_TZ_OFFSETS)]
        self._pixel = object_id(KIND_PIXEL, account_id, 0)
        self._page_id = str(100000000000000 + self._key % 900000000000000)
        self._app_id = str(1000000000000 + (self._key >> 20) % 9000000000000)

    @property
    def count(self) -> int:
        """Number of ads ever created in the account (visible or not): the edge's positions."""
        return self.base_count + self.created_count

    def _h(self, index: int, salt: int) -> int:
        return mix64(self._key ^ (index * 0x100000001B3 + salt))

    def base_effective_status(self, index: int) -> str:
        """Effective status before mutations: a pure function of the index and the configured ratios."""
        u = self._h(index, 1) / 18446744073709551616.0
        if u < self.deleted_ratio:
            return "DELETED"
        if u < self.deleted_ratio + self.archived_ratio:
            return "ARCHIVED"
        v = self._h(index, 2) / 18446744073709551616.0
        for threshold, status in _LIVE_STATUS_MIX:
            if v < threshold:
                return status
        return "ACTIVE"  # pragma: no cover - the last threshold is above 1

    def effective_status(self, index: int) -> str:
        """Current effective status of ad ``index``."""
        ov = self.overrides.get(index)
        if ov is not None and ov.effective_status is not None:
            return ov.effective_status
        return self.base_effective_status(index)

    def base_times(self, index: int) -> tuple[int, int]:
        """(created, updated) epochs before mutations; updated spreads independently of the index."""
        h = self._h(index, 3)
        created = _T_START + h % (_T_CREATED_END - _T_START)
        updated = created + (h >> 32) % (_T_END - created)
        return created, updated

    def updated_epoch(self, index: int) -> int:
        """Current ``updated_time`` of ad ``index`` as a Unix epoch."""
        ov = self.overrides.get(index)
        if ov is not None:
            return ov.updated
        return self.base_times(index)[1]

    def id_of(self, index: int) -> str:
        """The ad's id."""
        return object_id(KIND_AD, self.account_id, index)

    def index_of(self, ad_id: str) -> int | None:
        """Index of an ad id of this account, or ``None``."""
        parsed = parse_object_id(ad_id)
        if parsed is None or parsed[0] != KIND_AD or parsed[1] != self.account_id:
            return None
        return parsed[2] if parsed[2] < self.count else None

    def row(self, index: int) -> dict[str, Any]:
        """The full ad as a dict (every field it has a value for): the ground truth tests compare with."""
        return {name: json.loads(text) for name, text in self.encoded(index).items()}

    def encoded(self, index: int) -> dict[str, str]:
        """The full ad as ``{field: JSON text of its value}``, in Meta's field shapes.

        Why JSON text and not a dict: a page is assembled by joining these fragments, which is several
        times faster than building nested dicts and serialising them, and keeps the sandbox from being the
        bottleneck of a benchmark. Every generated string is plain ASCII without quotes or backslashes, so
        it can be quoted without escaping. Optional fields are left out when the ad has no value for them,
        as Meta leaves them out. All variation comes from four hashes of the index.
        """
        acct = self.account_id
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
        adset_index = index // ADS_PER_ADSET
        campaign_index = adset_index // ADSETS_PER_CAMPAIGN
        adset_id = object_id(KIND_ADSET, acct, adset_index)
        campaign_id = object_id(KIND_CAMPAIGN, acct, campaign_index)
        configured = _CONFIGURED_FOR.get(status, "ACTIVE")
        country = _COUNTRIES[ha % len(_COUNTRIES)]
        bid_amount = 50 + (ha >> 8) % 4950 + 10 * revision
        bid_type = _BID_TYPES[campaign_index % len(_BID_TYPES)]
        name = f"{_THEMES[campaign_index % len(_THEMES)]} - {country} - Ad {index + 1}"
        if revision:
            name += f" (rev {revision})"
        mask = (ha >> 24) % 15 + 1
        platforms = ",".join(f'"{p}"' for bit, p in enumerate(_PLATFORMS) if mask >> bit & 1)
        interest_id, interest_name = _INTERESTS[(ha >> 28) % len(_INTERESTS)]
        age_min = 18 + (ha >> 32) % 12
        age_max = 65 if (ha >> 40) & 1 else age_min + 10 + (ha >> 41) % 20
        genders = f"[{1 + ((ha >> 46) & 1)}]" if (ha >> 47) % 10 < 3 else "[]"  # noqa: PLR2004 - 3 in 10
        pixel_spec = f'{{"action.type":["offsite_conversion"],"fb_pixel":["{self._pixel}"]}}'
        post = 10**15 + hb % 10**15
        ad = {
            "id": f'"{object_id(KIND_AD, acct, index)}"',
            "account_id": f'"{acct}"',
            "name": f'"{name}"',
            "adset": f'{{"id":"{adset_id}"}}',
            "adset_id": f'"{adset_id}"',
            "campaign": f'{{"id":"{campaign_id}"}}',
            "campaign_id": f'"{campaign_id}"',
            "creative": f'{{"id":"{object_id(KIND_CREATIVE, acct, index)}"}}',
            "status": f'"{configured}"',
            "configured_status": f'"{configured}"',
            "effective_status": f'"{status}"',
            "created_time": f'"{format_time(created, off, suf)}"',
            "updated_time": f'"{format_time(updated, off, suf)}"',
            "bid_amount": str(bid_amount),
            "bid_type": f'"{bid_type}"',
            "bid_info": f'{{"{"IMPRESSIONS" if bid_type == "CPM" else "ACTIONS"}":{bid_amount}}}',
            "conversion_domain": f'"shop{campaign_index % 97}.example.com"',
            "conversion_specs": f"[{pixel_spec}]",
            "tracking_specs": f'[{pixel_spec},{{"action.type":["post_engagement"],"page":["{self._page_id}"],'
            f'"post":["{post}"]}}]',
            "demolink_hash": f'"{hc:016x}"',
            "display_sequence": str(index % ADS_PER_ADSET),
            "engagement_audience": "true" if (ha >> 36) % 10 == 0 else "false",
            "failed_delivery_checks": "[]",
            "issues_info": "[]",
            "last_updated_by_app_id": f'"{self._app_id}"',
            "placement": f'{{"publisher_platforms":[{platforms}]}}',
            "preview_shareable_link": f'"https://fb.me/{hb >> 24:010x}"',
            "priority": "0",
            "source_ad_id": '"0"',
            "special_ad_categories": "[]",
            "targeting": f'{{"age_min":{age_min},"age_max":{age_max},"genders":{genders},'
            f'"geo_locations":{{"countries":["{country}"],"location_types":["home","recent"]}},'
            f'"publisher_platforms":[{platforms}],'
            f'"flexible_spec":[{{"interests":[{{"id":"{interest_id}","name":"{interest_name}"}}]}}],'
            f'"targeting_automation":{{"advantage_audience":{(ha >> 50) & 1}}}}}',
        }
        self._add_optional_fields(ad, hc, index=index, status=status, created=created, name=name)
        return ad

    def _add_optional_fields(
        self, ad: dict[str, str], h: int, *, index: int, status: str, created: int, name: str
    ) -> None:
        """Fields only some ads have a value for (as JSON text); Meta leaves them out otherwise."""
        acct, off, suf = self.account_id, self._tz_offset, self._tz_suffix
        roll = (h >> 8) % 1000
        if status in _EVER_ACTIVE:
            ad["ad_active_time"] = f'"{3600 + (h >> 20) % (3600 * 24 * 400)}"'
        if status == "WITH_ISSUES":
            ad["issues_info"] = _ISSUES_INFO
            ad["failed_delivery_checks"] = _FAILED_CHECKS
        if status == "DISAPPROVED":
            ad["ad_review_feedback"] = _REVIEW_FEEDBACK
        if roll < 100:  # noqa: PLR2004 - one ad in ten is scheduled
            ad["ad_schedule_start_time"] = f'"{format_time(created + 86400, off, suf)}"'
            ad["ad_schedule_end_time"] = f'"{format_time(created + 86400 * 30, off, suf)}"'
        if roll < 200:  # noqa: PLR2004 - one ad in five carries a label
            label = (index // (ADS_PER_ADSET * ADSETS_PER_CAMPAIGN)) % 50
            stamp = format_time(_T_START + label * 86400, off, suf)
            ad["adlabels"] = (
                f'[{{"id":"{object_id(KIND_LABEL, acct, label)}","name":"label-{label}",'
                f'"created_time":"{stamp}","updated_time":"{stamp}"}}]'
            )
        if 200 <= roll < 300 and index > 0:  # noqa: PLR2004 - one ad in ten is a copy of an earlier ad
            source = object_id(KIND_AD, acct, (h >> 32) % index)
            ad["source_ad_id"] = f'"{source}"'
            ad["source_ad"] = f'{{"id":"{source}"}}'
        if 300 <= roll < 350:  # noqa: PLR2004 - a few ads use asset groups and get recommendations
            ad["creative_asset_groups_spec"] = (
                f'{{"groups":[{{"group_id":"{h >> 16}","texts":[{{"text":"{name}"}}]}}]}}'
            )
            ad["recommendations"] = _RECOMMENDATIONS

    def iter_visible(self, statuses: frozenset[str]) -> Iterator[int]:
        """Indexes (in edge order) whose effective status is in ``statuses``."""
        for i in range(self.count):
            if self.effective_status(i) in statuses:
                yield i


class DataStore:
    """All accounts' data plus the mutation machinery; one lock guards every mutation."""

    def __init__(
        self,
        seed: int,
        accounts: dict[str, int],
        archived_ratio: float,
        deleted_ratio: float,
    ) -> None:
        self.seed = seed
        self.ads: dict[str, AdCollection] = {
            acct: AdCollection(seed, acct, n, archived_ratio, deleted_ratio) for acct, n in accounts.items()
        }
        self._lock = threading.Lock()
        self._last_stamp = 0
        self._mutations = 0

    def account_ids(self) -> list[str]:
        """Configured account ids, in configuration order."""
        return list(self.ads)

    def _pick(self, coll: AdCollection, rng: random.Random, k: int, taken: set[int]) -> list[int]:
        """Pick ``k`` distinct default-visible ads at random (deterministically) that are not yet taken."""
        picked: list[int] = []
        attempts = 0
        limit = 50 * (k + 10) + coll.count
        while len(picked) < k and attempts < limit:
            attempts += 1
            i = rng.randrange(coll.count) if coll.count else 0
            if coll.count and i not in taken and coll.effective_status(i) in DEFAULT_VISIBLE:
                taken.add(i)
                picked.append(i)
        if len(picked) < k:
            raise ValueError(f"account {coll.account_id} has fewer than {k} visible ads left to pick")
        return picked

    def mutate(
        self,
        account_id: str,
        stamp_floor: float,
        *,
        update: int = 0,
        create: int = 0,
        delete: int = 0,
        update_ids: Iterable[str] = (),
        delete_ids: Iterable[str] = (),
    ) -> tuple[MutationResult, int]:
        """Apply one mutation batch and return what it touched plus the stamp it used.

        All objects of one batch share one ``updated_time`` stamp, strictly after every earlier stamp and
        no earlier than ``stamp_floor`` (the virtual clock), so an incremental sync can be checked exactly.
        """
        coll = self.ads.get(account_id)
        if coll is None:
            raise ValueError(f"unknown account_id {account_id!r}")
        for label, n in (("update", update), ("create", create), ("delete", delete)):
            if n < 0:
                raise ValueError(f"{label} must be >= 0")
        with self._lock:
            explicit_update = [self._index_or_raise(coll, x) for x in update_ids]
            explicit_delete = [self._index_or_raise(coll, x) for x in delete_ids]
            self._mutations += 1
            rng = random.Random(mix64(self.seed ^ (self._mutations * 0x9E3779B1)))  # noqa: S311 - reproducible
            taken = set(explicit_update) | set(explicit_delete)
            to_update = explicit_update + self._pick(coll, rng, update, taken)
            to_delete = explicit_delete + self._pick(coll, rng, delete, taken)
            stamp = max(int(stamp_floor), self._last_stamp + 1)
            self._last_stamp = stamp
            for i in to_update:
                ov = coll.overrides.get(i)
                if ov is None:
                    ov = coll.overrides[i] = AdOverride(updated=stamp)
                ov.updated = stamp
                ov.revision += 1
            for i in to_delete:
                ov = coll.overrides.get(i)
                if ov is None:
                    ov = coll.overrides[i] = AdOverride(updated=stamp)
                ov.updated = stamp
                ov.effective_status = "DELETED"
            created: list[int] = []
            for _ in range(create):
                i = coll.count
                coll.overrides[i] = AdOverride(updated=stamp, effective_status="ACTIVE", created=stamp)
                coll.created_count += 1
                created.append(i)
        result = MutationResult(
            updated=[coll.id_of(i) for i in to_update],
            created=[coll.id_of(i) for i in created],
            deleted=[coll.id_of(i) for i in to_delete],
        )
        return result, stamp

    @staticmethod
    def _index_or_raise(coll: AdCollection, ad_id: str) -> int:
        index = coll.index_of(str(ad_id))
        if index is None:
            raise ValueError(f"ad {ad_id!r} does not belong to account {coll.account_id}")
        return index
