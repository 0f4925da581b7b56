"""Stream declarations: a name, an edge, keys and a schema file. Behaviour lives in ``client.py``."""

from __future__ import annotations

from singer_sdk import SchemaDirectory, StreamSchema

from tap_meta_ads import schemas
from tap_meta_ads.client import GraphStream

#: One JSON schema per stream, named after the stream: the only list of each stream's fields.
SCHEMAS = SchemaDirectory(schemas)


class AdsStream(GraphStream):
    """Ads of each ad account: ``GET /act_{id}/ads``, incremental on ``updated_time``."""

    name = "ads"
    edge = "ads"
    primary_keys = ("id",)
    replication_key = "updated_time"
    schema = StreamSchema(SCHEMAS)


STREAM_TYPES: tuple[type[GraphStream], ...] = (AdsStream,)
