"""Insights metric values: Meta's strings in, exact numbers out, converted while a page's rows are built.

Meta serves every insights metric as a JSON string (``"impressions": "418"``, ``"spend": "12.34"``), also
inside lists of action stats (``"actions": [{"action_type": "link_click", "value": "8", "7d_click": "6"}]``).
The schema types them ``integer`` or ``number``, and they are written as exact numbers: ``int`` for counts,
``Decimal`` for money and ratios (a float would turn ``0.1`` into ``0.1000000000000000055...`` in a target
that reads it as a decimal).

Converted one value at a time in Python, that was the largest cost of the insights stream: about 70 values a
row, half of the tap's CPU per row. So :class:`MetricRows` builds, once per report, a msgspec type of the
report's rows from its schema (integer fields ``int``; number fields ``int`` when the value is whole, else
``Decimal``; action-stat lists as lists of typed items) and decodes each page's rows with it (by the writer,
see ``report_runs.Rows``) in lax mode: msgspec turns the strings into numbers in C while it parses, about
twice as fast as a plain parse followed by the conversion. A whole number as an ``int`` is the same JSON
number as the ``Decimal`` (``"24"`` is written ``24`` either way; ``"24.0"`` is written ``24``), and it is
written in a fraction of the time.

The typed decode takes a page only when it can give exactly what the value-by-value conversion gives;
any other page goes that slower way, whose result it must equal (``tests/test_metric_values.py``):

- a field or an action-stat key the schema does not list (a new action breakdown, say): the typed types
  forbid unknown names, so the page is converted value by value and nothing Meta sent is dropped;
- a value that is not a plain number for its type (``"1.5"`` as a count, ``"n/a"``, ``true``): the same,
  and the slow way names the field and the row's date in a one-line error, or converts what it can
  (``"12.0"`` as a count is 12);
- ``NaN`` or ``Infinity``: both ways read them as a ``Decimal``, and JSON cannot carry them. The slow way
  refuses them with the field's name; on the typed way the writer refuses the record
  (``records.RecordWriter``), before it or anything after it is written. Looking for them in every body
  cost a quarter of the decode, for a value Meta is not known to send.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from tap_meta_ads.pages import decode_rows

Converter = Callable[[Any], Any]


class MetricValueError(ValueError):
    """A metric Meta sent that is not a number of its type; the caller names the stream."""


# -- value by value: the exact reference, and the way for pages the typed decode does not take -------------


def to_int(value: Any) -> Any:  # noqa: ANN401 - whatever Meta sent
    """A count: ``"418"`` -> 418, ``"12.0"`` -> 12; ``None`` stays ``None``."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        number = to_decimal(value)
        if number != number.to_integral_value():
            msg = f"{value!r} is not a whole number"
            raise MetricValueError(msg) from None
        return int(number)


def to_decimal(value: Any) -> Any:  # noqa: ANN401 - whatever Meta sent
    """Money or a ratio: ``"12.34"`` -> ``Decimal("12.34")``; ``None`` stays ``None``."""
    if value is None or isinstance(value, Decimal):
        return value
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        msg = f"{value!r} is not a number"
        raise MetricValueError(msg) from None
    if not number.is_finite():
        msg = f"{value!r} is not a finite number"
        raise MetricValueError(msg)
    return number


def _types(prop: Mapping[str, Any]) -> set[str]:
    kind = prop.get("type", [])
    return {kind} if isinstance(kind, str) else set(kind)


def _number_converter(prop: Mapping[str, Any]) -> Converter | None:
    kinds = _types(prop)
    if "integer" in kinds:
        return to_int
    if "number" in kinds:
        return to_decimal
    return None


def _item_properties(prop: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The properties of a list's items when the property is a list of objects (action stats)."""
    items = prop.get("items") if "array" in _types(prop) else None
    if isinstance(items, dict) and items.get("properties"):
        return items["properties"]
    return None


def row_converters(schema: Mapping[str, Any]) -> dict[str, Converter]:
    """One converter per numeric property (and per list of action stats), read from the schema once."""
    out: dict[str, Converter] = {}
    for name, prop in schema["properties"].items():
        scalar = _number_converter(prop)
        if scalar is not None:
            out[name] = scalar
            continue
        inner_props = _item_properties(prop)
        if inner_props is not None:
            inner = {k: c for k, p in inner_props.items() if (c := _number_converter(p)) is not None}
            out[name] = _list_converter(inner)
    return out


def _list_converter(inner: dict[str, Converter]) -> Converter:
    def convert(items: Any) -> Any:  # noqa: ANN401 - whatever Meta sent
        if not isinstance(items, list):
            return items
        return [
            {k: inner[k](v) if k in inner else v for k, v in item.items()} if isinstance(item, dict) else item
            for item in items
        ]

    return convert


# -- the typed decode ---------------------------------------------------------------------------------------


def _value_type(prop: Mapping[str, Any]) -> Any:  # noqa: ANN401 - a type expression for msgspec
    """The msgspec type of one property: numbers typed (absent stays absent), anything else as sent."""
    kinds = _types(prop)
    if "integer" in kinds:
        return int | None | msgspec.UnsetType
    if "number" in kinds:
        return int | Decimal | None | msgspec.UnsetType
    return Any


def _struct(name: str, properties: Mapping[str, Any], nested: Mapping[str, Any]) -> type[msgspec.Struct]:
    """A struct of the given JSON-schema properties that refuses unknown names and omits absent ones.

    Meta's names are not always identifiers (``1d_click``), so fields are ``f0``, ``f1``, ... renamed to them.
    """
    names = list(properties)
    fields = [(f"f{i}", nested.get(n) or _value_type(properties[n]), msgspec.UNSET) for i, n in enumerate(names)]
    return msgspec.defstruct(
        name,
        fields,
        rename={f"f{i}": n for i, n in enumerate(names)},
        forbid_unknown_fields=True,
        omit_defaults=True,
    )


class MetricRows:
    """Decodes pages of one report's rows with their metrics already numbers (see the module's docstring)."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.converters = row_converters(schema)
        props: Mapping[str, Any] = schema["properties"]
        lists: dict[str, Any] = {}
        for name, prop in props.items():
            inner = _item_properties(prop)
            if inner is not None:
                lists[name] = list[_struct(f"Item_{name}", inner, {})] | None | msgspec.UnsetType  # type: ignore[misc]  # built at run time
        row = _struct("Row", props, lists)
        self._typed = msgspec.json.Decoder(list[row], strict=False)  # type: ignore[valid-type]  # lax: "418" is 418
        self.typed_pages = 0
        self.converted_pages = 0

    def decode_rows(self, data: msgspec.Raw | bytes) -> list[dict[str, Any]]:
        """A page's ``data`` (the raw JSON list a fetcher kept, see ``pages.GraphPage``), metrics as numbers.

        Raises ``msgspec.DecodeError`` when it is not a list of objects, :class:`MetricValueError` (with the field
        and the row's date) for a value that is not a number of its type.
        """
        try:
            typed = self._typed.decode(data)
        except msgspec.ValidationError:  # a shape the typed decode does not take: value by value
            rows = decode_rows(data)
            self.converted_pages += 1
            for row in rows:
                self.convert(row)
            return rows
        self.typed_pages += 1
        return msgspec.to_builtins(typed, builtin_types=(Decimal,))

    def convert(self, row: dict[str, Any]) -> None:
        """Convert one row's metrics in place, value by value (the reference the typed decode must equal)."""
        for name, convert in self.converters.items():
            if name in row:
                try:
                    row[name] = convert(row[name])
                except MetricValueError as exc:
                    msg = f"Meta sent a bad value for {name} ({exc}) on {row.get('date_start')}"
                    raise MetricValueError(msg) from None
