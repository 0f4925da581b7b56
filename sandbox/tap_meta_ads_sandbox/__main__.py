"""``python -m tap_meta_ads_sandbox``: the same as the ``tap-meta-ads-sandbox`` console script."""

from __future__ import annotations

import sys

from tap_meta_ads_sandbox.cli import main

sys.exit(main())
