"""Stream declarations: a name, an edge, keys and a schema file. Behaviour lives in ``client.py``."""

from __future__ import annotations

from importlib import resources

from tap_meta_ads.client import GraphStream

SCHEMAS = resources.files("tap_meta_ads") / "schemas"


class AdsStream(GraphStream):
    """Ads of each ad account: ``GET /act_{id}/ads``, incremental on ``updated_time``."""

    name = "ads"
    edge = "ads"
    primary_keys = ("id",)
    replication_key = "updated_time"
    schema_filepath = SCHEMAS / "ads.json"


STREAM_TYPES: tuple[type[GraphStream], ...] = (AdsStream,)
