"""The orchestration's plain-Python modules (shards, settings, Meltano output) are importable here.

`orchestrate/dagster/` is Dagster's working directory (harness.py puts it on sys.path); its package
`meta_ads_backup` keeps everything but `definitions.py` and `__main__.py` free of Dagster, so these tests
run in the tap's venv. The Dagster job itself runs in its own venv (.ci/.tools/dagster), as a subprocess,
in test_dagster_backup.py.
"""

from __future__ import annotations

from tests.orchestrate.harness import ORCHESTRATE

__all__ = ["ORCHESTRATE"]
