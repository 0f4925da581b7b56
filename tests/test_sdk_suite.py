"""The Singer SDK's built-in tap test suite, run against the sandbox over real HTTP.

The suite's test class is built at import time from a config, so this module starts its own
sandbox at import (stopped when the interpreter exits).
"""

from __future__ import annotations

import atexit
import datetime

from singer_sdk.testing import get_tap_test_class
from tap_meta_ads_sandbox import SandboxConfig, SandboxServer

from tap_meta_ads.insights import RETENTION_MONTHS, months_back
from tap_meta_ads.tap import TapMetaAds

_SANDBOX = SandboxServer(
    SandboxConfig(seed=11, accounts={"1001": 400, "1002": 300}, tokens=("sandbox-token",)), host="127.0.0.1", port=0
)
_SANDBOX.__enter__()
atexit.register(_SANDBOX.__exit__, None, None, None)
#: The suite syncs every stream: keep insights to the first ten days Meta still serves (37 months back).
_INSIGHTS_END = months_back(datetime.datetime.now(datetime.timezone.utc).date(), RETENTION_MONTHS) + datetime.timedelta(
    days=10
)

_CONFIG = {
    "access_token": "sandbox-token",
    "account_ids": ["act_1001", "1002"],
    "api_url": _SANDBOX.url,
    "page_size": 100,
    "start_date": "2023-01-01T00:00:00Z",
    "end_date": _INSIGHTS_END.isoformat(),
    "insights_poll_interval_seconds": 0.01,
    "insights_window_days": 30,
}


def _every_stream_selected() -> dict:
    """The discovered catalog with every stream selected (insights streams are not selected by default).

    Breakdown reports without ``reach``: Meta serves reach with breakdowns for 13 months only, and the
    suite's insights days are 37 months back.
    """
    catalog = TapMetaAds(config=_CONFIG, validate_config=False).catalog_dict
    for entry in catalog["streams"]:
        with_breakdowns = any(
            k in entry["key_properties"] for k in ("age", "country", "region", "comscore_market", "publisher_platform")
        )
        for meta in entry["metadata"]:
            if meta["breadcrumb"] == []:
                meta["metadata"]["selected"] = True
            if with_breakdowns and meta["breadcrumb"] == ["properties", "reach"]:
                meta["metadata"]["selected"] = False
    return catalog


TestTapMetaAds = get_tap_test_class(TapMetaAds, config=_CONFIG, catalog=_every_stream_selected())
