"""Stream declarations: a name, an edge, keys and a schema file. Behaviour lives in ``client.py``.

Which edges are incremental, and why (from Meta's reference and public connectors; the README's coverage
table says the same):

- ``ads``, ``adsets``, ``campaigns``: ``updated_time`` with Meta's server-side ``filtering`` and statuses
  from ``effective_status``.
- ``adimages``, ``advideos``: the objects have ``updated_time`` but the edges take no ``filtering``
  (adimages' parameters are hashes, sizes, name and business; Airbyte dropped its advideos filter because
  it stopped working in 2023-01). The tap reads every page and keeps the objects updated after the
  bookmark itself: the same calls as a full table, but only changes reach the target. (Airbyte stops at
  the first older record, trusting a newest-first order Meta does not document; the tap does not.)
- ``adcreatives``: AdCreative has no ``updated_time``: full table.
- ``customconversions``: only ``creation_time`` and ``last_fired_time``, which moves whenever the pixel
  fires, not when the conversion is edited: full table.
- ``adaccounts``: ``GET /act_{id}`` for each configured account: one record each, full table.
- ``activities``: the account's change log, ``event_time`` through the edge's ``since``/``until``. Entries
  have no id: the key is ``activity_key``, a hash of what makes an entry itself (when, what, to which object,
  by whom, through which app, with which values), see ``docs/account-backup.md``.
- ``custom_audiences``, ``saved_audiences``, ``ads_pixels``, ``adrules``, ``adlabels``: none of these edges
  takes a filter on a change time (custom audiences and rules have ``time_updated``/``updated_time``, but the
  reference lists no ``filtering`` for them): full table, each run a whole snapshot.
- ``ad_assets`` (``assets.py``): the bytes of the images and creative thumbnails, not selected by default.
"""

from __future__ import annotations

from singer_sdk import SchemaDirectory, StreamSchema

from tap_meta_ads import schemas
from tap_meta_ads.assets import AssetsStream
from tap_meta_ads.client import GraphStream
from tap_meta_ads.insights import InsightsStream
from tap_meta_ads.reports import ReportSpec

#: The action_type preset's fields: the ad, and every list of actions Meta breaks down by action type.
ACTION_FIELDS = (
    "account_name",
    "campaign_id",
    "adset_id",
    "ad_id",
    "ad_name",
    "attribution_setting",
    "spend",
    "actions",
    "action_values",
    "unique_actions",
    "conversions",
    "conversion_values",
    "cost_per_action_type",
    "cost_per_conversion",
)

#: One JSON schema per stream, named after the stream: the only list of each stream's fields.
SCHEMAS = SchemaDirectory(schemas)


class AdsStream(GraphStream):
    """Ads of each ad account: ``GET /act_{id}/ads``, incremental on ``updated_time``."""

    name = "ads"
    edge = "ads"
    primary_keys = ("id",)
    replication_key = "updated_time"
    schema = StreamSchema(SCHEMAS)


class CampaignsStream(GraphStream):
    """Campaigns: ``GET /act_{id}/campaigns``, incremental on ``updated_time``, like ads."""

    name = "campaigns"
    edge = "campaigns"
    primary_keys = ("id",)
    replication_key = "updated_time"
    schema = StreamSchema(SCHEMAS)


class AdSetsStream(GraphStream):
    """Ad sets: ``GET /act_{id}/adsets``, incremental on ``updated_time``, like ads."""

    name = "adsets"
    edge = "adsets"
    primary_keys = ("id",)
    replication_key = "updated_time"
    schema = StreamSchema(SCHEMAS)


class AdCreativesStream(GraphStream):
    """Creatives: ``GET /act_{id}/adcreatives``, full table; deleted ones only when asked for."""

    name = "adcreatives"
    edge = "adcreatives"
    primary_keys = ("id",)
    replication_key = None
    status_param = None
    status_field = "status"
    schema = StreamSchema(SCHEMAS)


class AdImagesStream(GraphStream):
    """Images: ``GET /act_{id}/adimages``, keyed by ``hash`` within the account, filtered on ``updated_time`` here."""

    name = "adimages"
    edge = "adimages"
    primary_keys = ("account_id", "hash")
    replication_key = "updated_time"
    status_param = None
    status_field = "status"
    server_filtering = False
    schema = StreamSchema(SCHEMAS)


class AdVideosStream(GraphStream):
    """Videos: ``GET /act_{id}/advideos``, filtered on ``updated_time`` here; ``account_id`` added by the tap."""

    name = "advideos"
    edge = "advideos"
    primary_keys = ("id",)
    replication_key = "updated_time"
    status_param = None
    server_filtering = False
    tap_fields = frozenset({"account_id"})
    schema = StreamSchema(SCHEMAS)


class CustomConversionsStream(GraphStream):
    """Custom conversions: ``GET /act_{id}/customconversions``, full table (archived ones carry ``is_archived``)."""

    name = "customconversions"
    edge = "customconversions"
    primary_keys = ("id",)
    replication_key = None
    status_param = None
    schema = StreamSchema(SCHEMAS)


class AdAccountsStream(GraphStream):
    """The configured ad accounts themselves: ``GET /act_{id}``, one record per account."""

    name = "adaccounts"
    primary_keys = ("id",)
    replication_key = None
    status_param = None
    single_object = True
    schema = StreamSchema(SCHEMAS)


class ActivitiesStream(GraphStream):
    """The change log: ``GET /act_{id}/activities``, incremental on ``event_time`` through ``since``/``until``."""

    name = "activities"
    edge = "activities"
    primary_keys = ("account_id", "activity_key")
    replication_key = "event_time"
    status_param = None
    window_params = True
    identity_key = "activity_key"
    identity_fields = ("event_time", "event_type", "object_id", "actor_id", "application_id", "extra_data")
    tap_fields = frozenset({"account_id", "activity_key"})
    schema = StreamSchema(SCHEMAS)


class CustomAudiencesStream(GraphStream):
    """Custom audiences: ``GET /act_{id}/customaudiences``, full table; ``rule`` only where Meta serves it."""

    name = "custom_audiences"
    edge = "customaudiences"
    primary_keys = ("id",)
    replication_key = None
    status_param = None
    optional_fields = frozenset({"rule"})
    schema = StreamSchema(SCHEMAS)


class SavedAudiencesStream(GraphStream):
    """Saved audiences (named targeting): ``GET /act_{id}/saved_audiences``, full table."""

    name = "saved_audiences"
    edge = "saved_audiences"
    primary_keys = ("id",)
    replication_key = None
    status_param = None
    tap_fields = frozenset({"account_id"})
    schema = StreamSchema(SCHEMAS)


class AdsPixelsStream(GraphStream):
    """Pixels: ``GET /act_{id}/adspixels``, full table; a pixel shared by accounts is listed under each."""

    name = "ads_pixels"
    edge = "adspixels"
    primary_keys = ("id",)
    replication_key = None
    status_param = None
    tap_fields = frozenset({"account_id"})
    schema = StreamSchema(SCHEMAS)


class AdRulesStream(GraphStream):
    """Automated rules: ``GET /act_{id}/adrules_library``, full table."""

    name = "adrules"
    edge = "adrules_library"
    primary_keys = ("id",)
    replication_key = None
    status_param = None
    schema = StreamSchema(SCHEMAS)


class AdLabelsStream(GraphStream):
    """Labels: ``GET /act_{id}/adlabels``, full table."""

    name = "adlabels"
    edge = "adlabels"
    primary_keys = ("id",)
    replication_key = None
    status_param = None
    tap_fields = frozenset({"account_id"})
    schema = StreamSchema(SCHEMAS)


class AdAssetsStream(AssetsStream):
    """The files of images and creatives (bytes, base64), once per account: not selected by default."""

    name = "ad_assets"
    primary_keys = ("account_id", "sha256")
    schema = StreamSchema(SCHEMAS)


class AdsInsightsStream(InsightsStream):
    """Daily performance of every ad through async report runs: one row per (day, ad), keyed on both."""

    name = "ads_insights"
    report = ReportSpec(name="ads_insights", level="ad")


# Presets: the usual reports, ready to select (none is selected by default); each is an ordinary report, keyed
# on its day, account, object and every breakdown. Reports with breakdowns read reach for 13 months only.


class AdsInsightsAccountStream(InsightsStream):
    """The account's own daily totals, deleted ads included: Ads Manager's account total, and the reconciliation's."""

    name = "ads_insights_account"
    report = ReportSpec(name="ads_insights_account", level="account")


class AdsInsightsCampaignStream(InsightsStream):
    """Daily performance of every campaign."""

    name = "ads_insights_campaign"
    report = ReportSpec(name="ads_insights_campaign", level="campaign")


class AdsInsightsAdSetStream(InsightsStream):
    """Daily performance of every ad set."""

    name = "ads_insights_adset"
    report = ReportSpec(name="ads_insights_adset", level="adset")


class AdsInsightsAgeAndGenderStream(InsightsStream):
    """Daily performance of every ad by age and gender."""

    name = "ads_insights_age_and_gender"
    report = ReportSpec(name="ads_insights_age_and_gender", breakdowns=("age", "gender"))


class AdsInsightsCountryStream(InsightsStream):
    """Daily performance of every ad by country."""

    name = "ads_insights_country"
    report = ReportSpec(name="ads_insights_country", breakdowns=("country",))


class AdsInsightsRegionStream(InsightsStream):
    """Daily performance of every ad by region."""

    name = "ads_insights_region"
    report = ReportSpec(name="ads_insights_region", breakdowns=("region",))


class AdsInsightsComscoreMarketStream(InsightsStream):
    """Daily performance of every ad by Comscore market (Meta's replacement for the DMA breakdown since 2026-06-22)."""

    name = "ads_insights_comscore_market"
    report = ReportSpec(name="ads_insights_comscore_market", breakdowns=("comscore_market",))


class AdsInsightsPlatformAndDeviceStream(InsightsStream):
    """Daily performance of every ad by placement: platform, position and impression device."""

    name = "ads_insights_platform_and_device"
    report = ReportSpec(
        name="ads_insights_platform_and_device",
        breakdowns=("publisher_platform", "platform_position", "impression_device"),
    )


class AdsInsightsActionTypeStream(InsightsStream):
    """Every ad's daily actions, conversions and their values and costs, one list entry per action type."""

    name = "ads_insights_action_type"
    report = ReportSpec(
        name="ads_insights_action_type",
        fields=ACTION_FIELDS,
        action_breakdowns=("action_type",),
    )


STREAM_TYPES: tuple[type[GraphStream], ...] = (
    AdsStream,
    AdSetsStream,
    CampaignsStream,
    AdCreativesStream,
    AdImagesStream,
    AdVideosStream,
    CustomConversionsStream,
    AdAccountsStream,
    ActivitiesStream,
    CustomAudiencesStream,
    SavedAudiencesStream,
    AdsPixelsStream,
    AdRulesStream,
    AdLabelsStream,
    AdAssetsStream,
    AdsInsightsStream,
    AdsInsightsAccountStream,
    AdsInsightsCampaignStream,
    AdsInsightsAdSetStream,
    AdsInsightsAgeAndGenderStream,
    AdsInsightsCountryStream,
    AdsInsightsRegionStream,
    AdsInsightsComscoreMarketStream,
    AdsInsightsPlatformAndDeviceStream,
    AdsInsightsActionTypeStream,
)
