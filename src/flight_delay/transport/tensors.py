"""Open Inference Protocol tensors: columns of flights in, outputs out, as JSON or binary data.

An inference request names one input per flight field, each a column of N values (shape [N] or
[N, 1]): JSON `data` (nested lists flattened in row-major order), or raw bytes after the JSON header
when the binary tensor extension is used (`Inference-Header-Content-Length`, each such input's
`parameters.binary_data_size`). Numbers are little-endian; a BYTES tensor is each element's 4-byte
little-endian length then its bytes. `null`, or NaN in a floating-point input, is a missing value.
The columns become one mapping per flight, which the data plane validates like any other flight.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flight_delay.errors import FlightDelayError
from flight_delay.features import API_FIELDS, FIELDS_BY_NAME

NUMERIC_DTYPES = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
DATATYPES = frozenset({*NUMERIC_DTYPES, "BYTES"})
FIELD_DATATYPES = {"int": "INT64", "float": "FP64", "str": "BYTES"}
ELEMENT_LENGTH = struct.Struct("<I")


class BadTensor(FlightDelayError):
    """An inference request the protocol cannot read: its shape, datatype, data or binary part."""

    status = 400
    code = "invalid_request"


@dataclass(frozen=True)
class Tensor:
    """An output: its name, datatype and values, one per flight."""

    name: str
    datatype: str
    values: Sequence[Any]


def field_datatype(name: str) -> str:
    """The datatype a flight field is described with in the model's metadata."""
    return FIELD_DATATYPES[FIELDS_BY_NAME[name].kind]


def flights_of(request: Any, binary: bytes) -> list[dict[str, Any]]:
    """The flights of an inference request: one mapping per row, from one input per field."""
    inputs = _inputs(request)
    chunks = _binary_chunks(inputs, binary)
    columns = {spec["name"]: _column(spec, next(chunks)) for spec in inputs}
    sizes = {len(values) for values in columns.values()}
    if len(sizes) != 1:
        raise BadTensor(f"Every input must hold as many flights; they hold {sorted(sizes)}.")
    rows = sizes.pop()
    return [{name: values[row] for name, values in columns.items()} for row in range(rows)]


def _inputs(request: Any) -> list[dict[str, Any]]:
    """The request's inputs, each a flight field named once, with a known datatype and a shape."""
    inputs = request.get("inputs") if type(request) is dict else None
    if type(inputs) is not list or not inputs or not all(type(spec) is dict for spec in inputs):
        raise BadTensor("The request must be an object whose `inputs` is a non-empty list of tensors.")
    names = [spec.get("name") for spec in inputs]
    unknown = [str(name) for name in names if name not in FIELDS_BY_NAME]
    if unknown:
        known = ", ".join(spec.name for spec in API_FIELDS)
        raise BadTensor(f"Unknown inputs {unknown[:10]}: each input is a flight field, one of {known}.")
    if len(set(names)) != len(names):
        raise BadTensor("Each input may be given once.")
    for spec in inputs:
        _check_spec(spec)
    return inputs


def _check_spec(spec: dict[str, Any]) -> None:
    """Refuses an input whose datatype is unknown or whose shape is not [N] or [N, 1]."""
    if spec.get("datatype") not in DATATYPES:
        raise BadTensor(f"Input {spec['name']}: datatype must be one of {sorted(DATATYPES)}.")
    shape = spec.get("shape")
    if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
        raise BadTensor(f"Input {spec['name']}: shape must be a list of sizes, [N] or [N, 1].")
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise BadTensor(f"Input {spec['name']}: shape must be [N] or [N, 1], not {shape}.")


def _binary_chunks(inputs: list[dict[str, Any]], binary: bytes) -> Iterator[bytes | None]:
    """Each input's binary data in order (None for an input whose data is JSON); all of it used."""
    offset = 0
    for spec in inputs:
        size = (spec.get("parameters") or {}).get("binary_data_size")
        if size is None:
            yield None
            continue
        if type(size) is not int or size < 0 or offset + size > len(binary):
            raise BadTensor(f"Input {spec['name']}: binary_data_size is beyond the binary data sent.")
        yield binary[offset : offset + size]
        offset += size
    if offset != len(binary):
        raise BadTensor(f"{len(binary) - offset} bytes of binary data belong to no input.")


def _column(spec: dict[str, Any], raw: bytes | None) -> list[Any]:
    """One input's values, flattened, as Python values (a missing value as None)."""
    count = math.prod(spec["shape"])
    values = _from_json(spec) if raw is None else _from_binary(spec, raw)
    if len(values) != count:
        raise BadTensor(
            f"Input {spec['name']}: shape {spec['shape']} holds {count} values; {len(values)} came."
        )
    return [None if type(v) is float and math.isnan(v) else v for v in values]


def _from_json(spec: dict[str, Any]) -> list[Any]:
    """The values of an input's JSON `data`, nested lists flattened in row-major order."""
    data = spec.get("data")
    if type(data) is not list:
        raise BadTensor(f"Input {spec['name']}: data must be a list (or binary data).")
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if type(value) is list:
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


def _from_binary(spec: dict[str, Any], raw: bytes) -> list[Any]:
    """The values of an input's binary data: little-endian numbers, or length-prefixed UTF-8 strings."""
    if spec["datatype"] == "BYTES":
        return _strings(spec["name"], raw)
    dtype = np.dtype(NUMERIC_DTYPES[spec["datatype"]])
    if len(raw) % dtype.itemsize:
        raise BadTensor(
            f"Input {spec['name']}: {len(raw)} bytes is not a whole number of {spec['datatype']}."
        )
    return np.frombuffer(raw, dtype=dtype).tolist()


def _strings(name: str, raw: bytes) -> list[str]:
    """The elements of a binary BYTES tensor, each its 4-byte length then its UTF-8 bytes."""
    values, offset = [], 0
    while offset < len(raw):
        if offset + ELEMENT_LENGTH.size > len(raw):
            raise BadTensor(f"Input {name}: the binary BYTES data ends inside an element's length.")
        (size,) = ELEMENT_LENGTH.unpack_from(raw, offset)
        offset += ELEMENT_LENGTH.size
        if offset + size > len(raw):
            raise BadTensor(f"Input {name}: an element of the binary BYTES data runs past its end.")
        try:
            values.append(raw[offset : offset + size].decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise BadTensor(f"Input {name}: an element is not UTF-8 text.") from exc
        offset += size
    return values


def encoded(tensor: Tensor) -> bytes:
    """An output's values as binary data: little-endian numbers, or length-prefixed UTF-8 strings."""
    if tensor.datatype != "BYTES":
        return np.asarray(tensor.values, dtype=NUMERIC_DTYPES[tensor.datatype]).tobytes()
    parts = []
    for value in tensor.values:
        text = str(value).encode("utf-8")
        parts += [ELEMENT_LENGTH.pack(len(text)), text]
    return b"".join(parts)
