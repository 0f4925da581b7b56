"""Every account's objects, edge by edge, and the mutations that change them (one lock guards them all).

The edges' sizes follow the ads an account is configured with (``--accounts 1001:3000``): one ad set per six
ads, one campaign per five ad sets, one creative per ad, an image per ten ads, a video per thirty, a few custom
conversions. Creating an ad creates the ad set, campaign and creative it refers to when they do not exist
yet (with the same stamp), as Meta needs them to exist first, so references never dangle.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from tap_meta_ads_sandbox.data import (
    ADS_PER_ADSET,
    ADSETS_PER_CAMPAIGN,
    AdCollection,
    AdOverride,
    IndexedCollection,
    MutationResult,
    mix64,
    parse_object_id,
)
from tap_meta_ads_sandbox.files import Cdn
from tap_meta_ads_sandbox.library import (
    ActivityCollection,
    AdLabelCollection,
    AdRuleCollection,
    CustomAudienceCollection,
    PixelCollection,
    SavedAudienceCollection,
)
from tap_meta_ads_sandbox.objects import (
    ZONE_OFFSETS,
    AccountNode,
    AdSetCollection,
    CampaignCollection,
    CreativeCollection,
    CustomConversionCollection,
    ImageCollection,
    VideoCollection,
)

#: The edges of an ad account the sandbox serves, in the order a client would usually read them.
EDGE_NAMES = (
    "ads",
    "adsets",
    "campaigns",
    "adcreatives",
    "adimages",
    "advideos",
    "customconversions",
    "activities",
    "customaudiences",
    "saved_audiences",
    "adspixels",
    "adrules_library",
    "adlabels",
)
#: Child edge -> (parent edge, children per parent): creating a child creates its parent when missing.
PARENTS: dict[str, tuple[tuple[str, int], ...]] = {
    "ads": (("adsets", ADS_PER_ADSET), ("adcreatives", 1)),
    "adsets": (("campaigns", ADSETS_PER_CAMPAIGN),),
}


@dataclass(frozen=True)
class Quirks:
    """Objects Meta cannot serve whole, by edge (0: none): see ``CreativeCollection`` and ``library.py``."""

    incomplete_creative_every: int = 0
    heavy_rule_every: int = 0


def _build_account(  # noqa: PLR0917 - an account's whole make-up
    seed: int, account_id: str, ads: int, archived_ratio: float, deleted_ratio: float, cdn: Cdn, quirks: Quirks
) -> tuple[dict[str, IndexedCollection], AccountNode]:
    """One account's collections, sized from its ads."""
    args = (seed, account_id)
    ratios = (archived_ratio, deleted_ratio)
    adsets = math.ceil(ads / ADS_PER_ADSET)
    campaigns = math.ceil(adsets / ADSETS_PER_CAMPAIGN)
    images = ImageCollection(*args, math.ceil(ads / 10), *ratios, cdn=cdn)
    videos = VideoCollection(*args, math.ceil(ads / 30), *ratios)
    creatives = CreativeCollection(
        *args, ads, *ratios, images=images, videos=videos.base_count, cdn=cdn,
        incomplete_every=quirks.incomplete_creative_every,
    )  # fmt: skip
    collections: dict[str, IndexedCollection] = {
        "ads": AdCollection(*args, ads, *ratios),
        "adsets": AdSetCollection(*args, adsets, *ratios),
        "campaigns": CampaignCollection(*args, campaigns, *ratios),
        "adcreatives": creatives,
        "adimages": images,
        "advideos": videos,
        "customconversions": CustomConversionCollection(*args, min(ads, 3 + ads // 250), *ratios),
        "activities": ActivityCollection(*args, 20 + ads // 10, 0.0, 0.0, ads=ads),
        "customaudiences": CustomAudienceCollection(
            *args, 3 + ads // 100, *ratios, heavy_rule_every=quirks.heavy_rule_every
        ),
        "saved_audiences": SavedAudienceCollection(*args, 2 + ads // 300, *ratios),
        "adspixels": PixelCollection(*args, 2, 0.0, 0.0),
        "adrules_library": AdRuleCollection(*args, 2 + ads // 400, *ratios),
        "adlabels": AdLabelCollection(*args, max(1, min(50, campaigns)), 0.0, 0.0),
    }
    return collections, AccountNode(*args, 1, 0.0, 0.0)


class DataStore:
    """All accounts' data plus the mutation machinery; one lock guards every mutation."""

    def __init__(
        self,
        seed: int,
        accounts: dict[str, int],
        archived_ratio: float,
        deleted_ratio: float,
        time_zones: dict[str, str] | None = None,
        *,
        cdn: Cdn | None = None,
        quirks: Quirks | None = None,
    ) -> None:
        self.seed = seed
        #: Signs the image and thumbnail URLs (``files.py``); the server points its base at itself.
        self.cdn = cdn or Cdn(seed, ttl_seconds=20 * 365 * 86400)
        self.edges: dict[str, dict[str, IndexedCollection]] = {name: {} for name in EDGE_NAMES}
        self.accounts: dict[str, AccountNode] = {}
        self.ads: dict[str, AdCollection] = {}
        for acct, n in accounts.items():
            collections, node = _build_account(
                seed, acct, n, archived_ratio, deleted_ratio, self.cdn, quirks or Quirks()
            )
            zone = (time_zones or {}).get(acct)
            if zone is not None:  # every object of the account writes its times in the chosen zone
                for coll in (*collections.values(), node):
                    coll.set_utc_offset(ZONE_OFFSETS[zone])
            for name, coll in collections.items():
                self.edges[name][acct] = coll
            self.accounts[acct] = node
            self.ads[acct] = collections["ads"]  # type: ignore[assignment]  # built as an AdCollection above
        self._lock = threading.Lock()
        self._last_stamp = 0
        self._mutations = 0

    def account_ids(self) -> list[str]:
        """Configured account ids, in configuration order."""
        return list(self.ads)

    def collection(self, edge: str, account_id: str) -> IndexedCollection:
        """The objects of one edge of one account; ValueError names what is unknown."""
        if edge not in self.edges:
            raise ValueError(f"unknown edge {edge!r}; known: {', '.join(EDGE_NAMES)}")
        coll = self.edges[edge].get(account_id)
        if coll is None:
            raise ValueError(f"unknown account_id {account_id!r}")
        return coll

    def object_at(self, oid: str) -> tuple[IndexedCollection, int] | None:
        """The collection and index of an object id the sandbox generated (any edge, any account), or ``None``."""
        parsed = parse_object_id(oid)
        if parsed is None:
            return None
        kind, account_id, _ = parsed
        for edges in self.edges.values():
            coll = edges.get(account_id)
            if coll is not None and coll.kind == kind and not isinstance(coll, ActivityCollection):
                index = coll.index_of(oid)
                return (coll, index) if index is not None else None
        return None

    def _pick(self, coll: IndexedCollection, rng: random.Random, k: int, taken: set[int]) -> list[int]:
        """Pick ``k`` distinct live objects (visible by default, not archived) at random, not yet taken."""
        picked: list[int] = []
        attempts = 0
        limit = 50 * (k + 10) + coll.count
        live = coll.live
        while len(picked) < k and attempts < limit:
            attempts += 1
            i = rng.randrange(coll.count) if coll.count else 0
            if coll.count and i not in taken and coll.effective_status(i) in live:
                taken.add(i)
                picked.append(i)
        if len(picked) < k:
            raise ValueError(
                f"account {coll.account_id} has fewer than {k} visible {coll.node_type} objects left to pick"
            )
        return picked

    def mutate(
        self,
        account_id: str,
        stamp_floor: float,
        *,
        edge: str = "ads",
        update: int = 0,
        create: int = 0,
        delete: int = 0,
        update_ids: Iterable[str] = (),
        delete_ids: Iterable[str] = (),
    ) -> tuple[MutationResult, int]:
        """Apply one mutation batch to one edge and return what it touched plus the stamp it used.

        All objects of one batch share one ``updated_time`` stamp, strictly after every earlier stamp and
        no earlier than ``stamp_floor`` (the virtual clock), so an incremental sync can be checked exactly.
        The result lists only the objects of ``edge``; parents created on the way get the same stamp.
        """
        if edge == "activities":
            raise ValueError("activities are appended by mutations of other edges; mutate those")
        coll = self.collection(edge, account_id)
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
                ov.effective_status = coll.deleted_status
            created = [self._create(edge, account_id, stamp) for _ in range(create)]
            result = MutationResult(
                updated=[coll.id_of(i) for i in to_update],
                created=[coll.id_of(i) for i in created],
                deleted=[coll.id_of(i) for i in to_delete],
            )
            log = self.edges["activities"][account_id]
            if isinstance(log, ActivityCollection):
                log.log_mutation(edge, result, stamp)
        return result, stamp

    def _create(self, edge: str, account_id: str, stamp: int) -> int:
        """Append one live object to an edge (and the parents it refers to, when missing); its index."""
        coll = self.edges[edge][account_id]
        i = coll.count
        coll.overrides[i] = AdOverride(updated=stamp, effective_status=coll.live_statuses[0], created=stamp)
        coll.created_count += 1
        for parent, per in PARENTS.get(edge, ()):
            while self.edges[parent][account_id].count <= i // per:
                self._create(parent, account_id, stamp)
        return i

    @staticmethod
    def _index_or_raise(coll: IndexedCollection, oid: str) -> int:
        index = coll.index_of(str(oid))
        if index is None:
            raise ValueError(f"{coll.node_type.lower()} {oid!r} does not belong to account {coll.account_id}")
        return index
