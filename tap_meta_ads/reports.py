"""Insights report definitions: what a report may ask Meta for, checked before the first request.

Why a module of its own: a report's definition (``insight_reports`` items and the presets of ``streams.py``)
is read by the settings' validation (``tap.py``) long before any report run exists, and what it may ask for
follows Meta's rules, not the run's: levels, the fields each level has a value for, which breakdowns combine,
which attribution windows and parameters Meta still honours. ``insights.py`` runs the reports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

LEVELS = ("ad", "adset", "campaign", "account")
#: Meta's action breakdowns (a subset: the ones that change row shapes least).
ACTION_BREAKDOWNS = ("action_type", "action_target_id", "action_destination", "action_device", "action_reaction")
#: Attribution windows Meta serves in ``action_attribution_windows`` (Meta's blog "Ads Insights API Metric
#: Availability Updates", 2025-10-16: "1-day click, 7-day click, 28-day click, 1-day engaged view, and 1-day
#: view will continue to be available"). Each action's ``value`` is always the ad set's own attribution
#: setting, the number Ads Manager shows; the windows add one key each.
ATTRIBUTION_WINDOWS = ("1d_click", "7d_click", "28d_click", "1d_view", "1d_engaged_view")
#: Windows Meta no longer returns (same source: "7d_view and 28d_view ... will no longer be returned").
RETIRED_WINDOWS = {"7d_view": "2026-01-12", "28d_view": "2026-01-12"}
#: The windows asked for by default: Meta's default setting (7-day click, 1-day view) plus 1-day click.
DEFAULT_WINDOWS = ("1d_click", "7d_click", "1d_view")
#: Parameters Meta ignores since 2025-06-10 (Supermetrics, "Facebook Ads reach and attribution changes -
#: June 10, 2025": "Action report times will be automatically selected by the API", "Unified attribution
#: will always be enabled"): never sent, and a report or setting that names one is refused with the reason.
IGNORED_PARAMETERS = {
    "use_unified_attribution_setting": "Meta always reports with each ad set's own attribution setting "
    "(unified attribution, as Ads Manager does)",
    "action_report_time": "Meta chooses the report time of actions itself",
    "use_account_attribution_setting": "Meta always reports with each ad set's own attribution setting",
}
#: Breakdowns Meta retired, and their replacement: Nielsen DMAs gave way to Comscore markets on 2026-06-22
#: (Meta's out-of-cycle changes 2026, quoted in singer-io/tap-facebook#271; estuary/connectors#4699).
RETIRED_BREAKDOWNS = {"dma": ("comscore_market", "2026-06-22")}
#: Which breakdowns combine: Meta serves "only some permutations of breakdowns" (its Insights breakdowns
#: guide, quoted in daroczig/fbRads#95): those of one group, one geography at a time; and
#: ``platform_position`` only with ``publisher_platform`` ("(#100) Current combination of data breakdown
#: columns (action_type, platform_position) is invalid", daroczig/fbRads#132).
BREAKDOWN_GROUPS = {
    "age": "demographic",
    "gender": "demographic",
    "country": "country",
    "region": "region",
    "comscore_market": "comscore_market",
    "publisher_platform": "placement",
    "platform_position": "placement",
    "device_platform": "placement",
    "impression_device": "placement",
}
#: The finest level a field has a value at; a report at a coarser level cannot ask for it.
FIELD_LEVEL = {
    "ad_id": "ad",
    "ad_name": "ad",
    "quality_ranking": "ad",
    "engagement_rate_ranking": "ad",
    "conversion_rate_ranking": "ad",
    "adset_id": "adset",
    "adset_name": "adset",
    "optimization_goal": "adset",
    "attribution_setting": "adset",
    "campaign_id": "campaign",
    "campaign_name": "campaign",
    "objective": "campaign",
}
_RANK = {level: n for n, level in enumerate(LEVELS)}
#: Meta answers these for every row; they are not asked for in ``fields=``.
ALWAYS_RETURNED = ("date_start", "date_stop")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
_REPORT_KEYS = frozenset(
    {"name", "level", "fields", "breakdowns", "action_breakdowns", "action_attribution_windows", "time_increment"}
)
_MAX_INCREMENT = 90


def _schema(name: str) -> dict[str, Any]:
    text = resources.files("tap_meta_ads.schemas").joinpath(name).read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


#: The one list of insights fields, and the one list of breakdown columns.
INSIGHTS_SCHEMA = _schema("ads_insights.json")
BREAKDOWN_SCHEMA = _schema("insights_breakdowns.json")


@dataclass(frozen=True)
class ReportSpec:
    """One insights report: a stream named ``name`` and what each of its report runs asks Meta for."""

    name: str
    level: str = "ad"
    fields: tuple[str, ...] | None = None  # None: every field the level has
    breakdowns: tuple[str, ...] = ()
    action_breakdowns: tuple[str, ...] = ("action_type",)
    action_attribution_windows: tuple[str, ...] = DEFAULT_WINDOWS
    time_increment: int = 1

    @property
    def object_key(self) -> str | None:
        """The id column of the level's objects (``None`` at account level)."""
        return None if self.level == "account" else f"{self.level}_id"

    @property
    def primary_keys(self) -> tuple[str, ...]:
        """Date, account, the level's object and every breakdown: re-reads upsert, never duplicate."""
        obj = (self.object_key,) if self.object_key else ()
        return ("date_start", "account_id", *obj, *self.breakdowns)

    def field_names(self) -> tuple[str, ...]:
        """The report's fields: the asked ones (or all the level has), plus the key columns."""
        names = self.fields if self.fields is not None else tuple(_level_fields(self.level))
        keys = tuple(k for k in self.primary_keys if k not in self.breakdowns)
        return tuple(dict.fromkeys((*ALWAYS_RETURNED, *keys, *names)))

    @classmethod
    def from_setting(cls, raw: object, index: int) -> ReportSpec:
        """Read one item of ``insight_reports``; a ValueError says in one line what is wrong with it."""
        if not isinstance(raw, dict):
            raise TypeError(f"insight_reports[{index}]: must be an object with at least a name")
        label = f"insight_reports[{index}] {raw.get('name')!r}"
        for key in sorted(set(raw) & set(IGNORED_PARAMETERS)):
            raise ValueError(f"{label}: {ignored_parameter(key)}")
        unknown = sorted(set(raw) - _REPORT_KEYS)
        if unknown:
            raise ValueError(f"{label}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(_REPORT_KEYS))}")
        name = raw.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{label}: name must be lowercase letters, digits and _ (starting with a letter)")
        level = raw.get("level", "ad")
        if level not in LEVELS:
            raise ValueError(f"{label}: level {level!r} is not one of {', '.join(LEVELS)}")
        fields = _names(raw, "fields", label)
        for f in fields or ():
            _check_field(f, level, label)
        breakdowns = _names(raw, "breakdowns", label) or []
        _check_breakdowns(breakdowns, label)
        action_breakdowns = _names(raw, "action_breakdowns", label)
        _check_members(action_breakdowns, ACTION_BREAKDOWNS, "action breakdown", label)
        windows = _names(raw, "action_attribution_windows", label)
        for window in windows or ():
            if window in RETIRED_WINDOWS:
                raise ValueError(
                    f"{label}: attribution window {window!r} was retired by Meta on {RETIRED_WINDOWS[window]} and "
                    f"is no longer served; Meta serves {', '.join(ATTRIBUTION_WINDOWS)}"
                )
        _check_members(windows, ATTRIBUTION_WINDOWS, "attribution window", label)
        increment = raw.get("time_increment", 1)
        if isinstance(increment, bool) or not isinstance(increment, int) or not 1 <= increment <= _MAX_INCREMENT:
            raise ValueError(f"{label}: time_increment must be a whole number of days, 1 to {_MAX_INCREMENT}")
        return cls(
            name=f"ads_insights_{name}",
            level=level,
            fields=tuple(fields) if fields is not None else None,
            breakdowns=tuple(breakdowns),
            action_breakdowns=tuple(action_breakdowns) if action_breakdowns is not None else ("action_type",),
            action_attribution_windows=tuple(windows) if windows is not None else DEFAULT_WINDOWS,
            time_increment=increment,
        )


def ignored_parameter(key: str) -> str:
    """Why a parameter Meta ignores is refused, in one line."""
    return f"{key} is ignored by Meta since 2025-06-10 ({IGNORED_PARAMETERS[key]}): remove it"


def _check_field(name: str, level: str, label: str) -> None:
    if name not in INSIGHTS_SCHEMA["properties"]:
        raise ValueError(f"{label}: unknown field {name!r} (see tap_meta_ads/schemas/ads_insights.json)")
    if _RANK[level] > _RANK[FIELD_LEVEL.get(name, "account")]:
        raise ValueError(f"{label}: field {name!r} has no value at level {level!r}")


def _check_members(names: list[str] | None, allowed: tuple[str, ...], what: str, label: str) -> None:
    for name in names or ():
        if name not in allowed:
            raise ValueError(f"{label}: {what} {name!r} is not one of {', '.join(allowed)}")


def _level_fields(level: str) -> list[str]:
    return [f for f in INSIGHTS_SCHEMA["properties"] if _RANK[level] <= _RANK[FIELD_LEVEL.get(f, "account")]]


def _names(raw: dict[str, Any], key: str, label: str) -> list[str] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{label}: {key} must be a list of names")
    if len(set(value)) != len(value):
        raise ValueError(f"{label}: {key} lists a name twice")
    return list(value)


def _check_breakdowns(breakdowns: list[str], label: str) -> None:
    for b in breakdowns:
        if b in RETIRED_BREAKDOWNS:
            new, when = RETIRED_BREAKDOWNS[b]
            raise ValueError(f"{label}: breakdown {b!r} was retired by Meta on {when}; use {new!r} instead")
        if b not in BREAKDOWN_SCHEMA["properties"]:
            known = ", ".join(BREAKDOWN_SCHEMA["properties"])
            raise ValueError(f"{label}: breakdown {b!r} is not supported (supported: {known})")
    groups = {BREAKDOWN_GROUPS[b] for b in breakdowns}
    if len(groups) > 1:
        raise ValueError(f"{label}: Meta refuses the breakdown combination {breakdowns} (mixes {sorted(groups)})")
    if "platform_position" in breakdowns and "publisher_platform" not in breakdowns:
        raise ValueError(f"{label}: Meta refuses breakdown 'platform_position' without 'publisher_platform'")


def reports_from_config(config: Mapping[str, Any], taken: frozenset[str] = frozenset()) -> list[ReportSpec]:
    """The custom reports of ``insight_reports``; ValueError (one line naming the report) when one is bad.

    ``taken``: the tap's own stream names (the presets): a custom report may not reuse one.
    """
    reports = [ReportSpec.from_setting(raw, n) for n, raw in enumerate(config.get("insight_reports") or [])]
    seen: set[str] = set()
    for n, spec in enumerate(reports):
        if spec.name in taken:
            msg = (
                f"insight_reports[{n}] {spec.name[13:]!r}: {spec.name} is a preset stream of the tap; "
                "select it instead, or give the report another name"
            )
            raise ValueError(msg)
        if spec.name in seen:
            raise ValueError(f"insight_reports[{n}] {spec.name[13:]!r}: the name is used twice")
        seen.add(spec.name)
    return reports


def report_problems(config: Mapping[str, Any], taken: frozenset[str] = frozenset()) -> list[str]:
    """Config validation's view: one line per problem (the first bad report, or a parameter Meta ignores)."""
    ignored = sorted(set(config) & set(IGNORED_PARAMETERS))
    if ignored:
        return [ignored_parameter(ignored[0])]  # the line starts with the setting's name
    if not isinstance(config.get("insight_reports", []), list):
        return ["insight_reports: must be a list of report objects"]
    try:
        reports_from_config(config, taken)
    except (TypeError, ValueError) as exc:
        return [str(exc)]
    return []


def report_schema(spec: ReportSpec) -> dict[str, Any]:
    """The stream's JSON schema: the report's fields from the insights schema, plus its breakdown columns."""
    props = INSIGHTS_SCHEMA["properties"]
    properties = {name: props[name] for name in spec.field_names()}
    for b in spec.breakdowns:
        properties[b] = BREAKDOWN_SCHEMA["properties"][b]
    return {"type": "object", "additionalProperties": False, "properties": properties}
