"""The Singer SDK's built-in tap test suite, run against the sandbox over real HTTP.

The suite's test class is built at import time from a config, so this module starts its own
sandbox at import (stopped when the interpreter exits).
"""

from __future__ import annotations

import atexit

from singer_sdk.testing import get_tap_test_class

from tap_meta_ads.sandbox import SandboxConfig, SandboxServer
from tap_meta_ads.tap import TapMetaAds

_SANDBOX = SandboxServer(
    SandboxConfig(seed=11, accounts={"1001": 400, "1002": 300}, tokens=("sandbox-token",)), host="127.0.0.1", port=0
)
_SANDBOX.__enter__()
atexit.register(_SANDBOX.__exit__, None, None, None)

TestTapMetaAds = get_tap_test_class(
    TapMetaAds,
    config={
        "access_token": "sandbox-token",
        "account_ids": ["act_1001", "1002"],
        "api_url": _SANDBOX.url,
        "page_size": 100,
        "start_date": "2023-01-01T00:00:00Z",
    },
)
