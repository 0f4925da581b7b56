"""The orchestration's plain-Python modules (shards, settings, Meltano output) are importable here.

`orchestrate/dagster/` is Dagster's working directory; its package `meta_ads_backup` keeps everything but
`definitions.py` and `__main__.py` free of Dagster, so these tests run in the tap's venv. The Dagster
job itself runs in its own venv (.ci/.tools/dagster), as a subprocess, in test_dagster_backup.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

ORCHESTRATE = Path(__file__).resolve().parents[2] / "orchestrate" / "dagster"
if str(ORCHESTRATE) not in sys.path:
    sys.path.insert(0, str(ORCHESTRATE))
