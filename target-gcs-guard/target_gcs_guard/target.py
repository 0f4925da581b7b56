"""The child process: target-gcs 1.2.3 with two fixes in its sink.

1. Non-integer JSON numbers. singer-sdk 0.40 reads them as `decimal.Decimal`, and target-gcs's
   `orjson.dumps` cannot serialise that (the target crashes). They are written back as the exact number
   text they arrived with.
2. The upload. target-gcs never closes its upload stream: the last part is sent when the interpreter
   exits, after the target printed its final STATE, and an error there is swallowed (exit code 0). The sink
   closes the stream in `clean_up`, which the SDK calls before it emits the final STATE, so a failed upload
   raises and the process exits non-zero.

This pins the internals of exactly target-gcs 1.2.3 (`GCSSink._gcs_write_handle`); the distribution's
dependency on `target-gcs==1.2.3` keeps it so. The supervising `guard` does not rely on these fixes to be
safe: it verifies the objects in the bucket itself.
"""

from __future__ import annotations

import decimal
from typing import Any

import orjson
from target_gcs.sinks import GCSSink
from target_gcs.target import TargetGCS


def _exact_number(value: object) -> orjson.Fragment:
    """Serialise a Decimal as the JSON number it was read from; refuse anything else."""
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


class GuardedGCSSink(GCSSink):
    """target-gcs's sink, Decimal-safe and closing (uploading) its object before STATE is emitted."""

    def process_record(self, record: dict[str, Any], context: dict[str, Any]) -> None:
        """Append one record to the object as a JSON line."""
        self.gcs_write_handle.write(
            orjson.dumps(record, default=_exact_number, option=orjson.OPT_APPEND_NEWLINE),
        )

    def clean_up(self) -> None:
        """Finish the upload; an error here propagates and makes the target exit non-zero."""
        handle: Any = vars(self).get("_gcs_write_handle")  # set by GCSSink.__init__ (target-gcs 1.2.3)
        if handle is not None:
            self._gcs_write_handle = None
            handle.close()
            self.logger.info("Uploaded gs://%s/%s", self.config.get("bucket_name"), self.key_name)
        super().clean_up()


class GuardedTargetGCS(TargetGCS):
    """TargetGCS using the guarded sink."""

    default_sink_class = GuardedGCSSink


def main() -> None:
    """Run the guarded target (console script `target-gcs-guarded-child`)."""
    GuardedTargetGCS.cli()


if __name__ == "__main__":
    main()
