"""RECORD messages without a walk of every record: deselected properties are pruned by a plan made once.

The SDK strips deselected properties with ``pop_deselected_record_properties``, a recursive walk of every
key of every nested dict of every record, looking each one up in the selection mask; it runs even when
every property is selected, and took about 28 % of the tap's CPU in a profile of 36,000 ads. The selection
does not change during a run, so :class:`Pruner` reads it once into the list of property paths that are
deselected (explicitly ``selected: false`` in the catalog, under selected parents) and removes only those
from each record: nothing at all when every property is selected, a few ``dict.pop`` calls otherwise.

The SDK calls the walk from ``Stream._generate_record_messages``, a private method: this module is the one
place that replaces it (:class:`PrunedRecordMessages`, a mixin of the base stream), and
``tests/test_records.py`` checks it against the SDK's own walk, so an SDK upgrade that changes either fails
loudly instead of silently writing deselected data.
"""

from __future__ import annotations

import datetime
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

from singer_sdk import singerlib
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.streams import Stream
from typing_extensions import override

Breadcrumb = tuple[str, ...]
_PROPERTIES = "properties"


@dataclass(frozen=True)
class Pruner:
    """The deselected property paths of a stream, e.g. ``(("preview_shareable_link",), ("targeting", "geo"))``."""

    paths: tuple[tuple[str, ...], ...]

    @classmethod
    def from_mask(cls, mask: Mapping[Breadcrumb, bool]) -> Pruner:
        """Read the selection mask the way the SDK's walk reads it, once.

        The walk pops a key when its breadcrumb resolves to deselected (a breadcrumb absent from the mask
        takes its parent's value) and never looks below a popped key, so exactly the explicitly deselected
        ``properties`` breadcrumbs whose ancestors are all selected matter.
        """
        paths: list[tuple[str, ...]] = []
        for breadcrumb, selected in mask.items():
            if selected or not _is_property_path(breadcrumb):
                continue
            names = breadcrumb[1::2]
            if all(_resolve(mask, names[:i]) for i in range(1, len(names))):
                paths.append(names)
        return cls(tuple(sorted(paths, key=len)))

    def prune(self, record: dict[str, Any]) -> None:
        """Remove the deselected properties from one record, in place (as the SDK does)."""
        for path in self.paths:
            node: object = record
            for name in path[:-1]:
                node = node.get(name) if isinstance(node, dict) else None
            if isinstance(node, dict):
                node.pop(path[-1], None)


def _is_property_path(breadcrumb: Breadcrumb) -> bool:
    """``("properties", "a", "properties", "b")``: the only breadcrumbs the SDK's walk consults."""
    return len(breadcrumb) >= 2 and len(breadcrumb) % 2 == 0 and all(p == _PROPERTIES for p in breadcrumb[::2])  # noqa: PLR2004


def _resolve(mask: Mapping[Breadcrumb, bool], names: tuple[str, ...]) -> bool:
    """Whether the property at ``names`` is selected (absent breadcrumbs inherit, as in the SDK's mask)."""
    return mask[tuple(part for name in names for part in (_PROPERTIES, name))]


class PrunedRecordMessages(Stream):
    """The SDK's RECORD messages, with deselected properties removed by a :class:`Pruner`.

    Everything else is the SDK's: stream maps (aliases, filters, flattening), the stream version,
    ``time_extracted``. Type conformance is not repeated here: the tap's streams conform nothing
    (``TYPE_CONFORMANCE_LEVEL = NONE``, see ``client.py``); a stream that asks for it gets the SDK's path.
    """

    _pruner: Pruner | None = None

    @override
    def _generate_record_messages(self, record: dict[str, Any]) -> Generator[singerlib.RecordMessage, None, None]:
        if self.TYPE_CONFORMANCE_LEVEL is not TypeConformanceLevel.NONE:
            yield from super()._generate_record_messages(record)
            return
        pruner = self._pruner
        if pruner is None:
            pruner = self._pruner = Pruner.from_mask(self.mask)
        if pruner.paths:
            pruner.prune(record)
        extracted = datetime.datetime.now(datetime.timezone.utc)
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is not None:
                yield singerlib.RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped,
                    version=self._stream_version,
                    time_extracted=extracted,
                )
