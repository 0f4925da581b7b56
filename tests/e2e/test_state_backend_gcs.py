"""Meltano's GCS state backend (`meltano[gcs]`, state_backend.uri gs://...) against the emulator."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.e2e.conftest import BUCKET, STATE_ID, bookmarks
from tests.e2e.servers import GcsEmulator, Meltano, Sandbox

PREFIX = "meltano-state"


def test_state_lives_in_gcs_and_drives_the_next_run(
    sandbox: Sandbox, gcs: GcsEmulator, make_meltano: Callable[..., Meltano]
) -> None:
    meltano = make_meltano(
        MELTANO_STATE_BACKEND_URI=f"gs://{BUCKET}/{PREFIX}",
        # The backend runs inside Meltano itself, not in a plugin: it needs the emulator's address too.
        STORAGE_EMULATOR_HOST=gcs.url,
    )
    meltano("run", "tap-meta-ads", "target-gcs")

    state_objects = gcs.object_names(f"{PREFIX}/")
    assert state_objects, "no state object in the bucket"
    stored = [json.loads(gcs.read(name)) for name in state_objects if name.endswith(".json")]
    assert any("singer_state" in json.dumps(doc) for doc in stored), stored
    via_cli = meltano.state(STATE_ID)
    assert via_cli is not None
    assert bookmarks(via_cli).keys() == {"1001", "1002"}
    # Nothing went to the system database: without the backend setting Meltano knows no state.
    assert not make_meltano().state(STATE_ID)

    changed = set(sandbox.mutate("1002", update=4)["updated"])
    sandbox.advance_clock(5)
    backups_before = set(gcs.object_names("meta-ads/ads/"))
    meltano("run", "tap-meta-ads", "target-gcs")
    (second,) = set(gcs.object_names("meta-ads/ads/")) - backups_before
    assert {r["id"] for r in gcs.records(second)} == changed
