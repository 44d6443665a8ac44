"""Fast paths for the predict schemas: marshmallow's own checks, compiled once into plain Python.

A fast path either returns exactly what marshmallow returns for the same input, or declines (returns
None) and marshmallow runs, so every error, status and message stays marshmallow's. It accepts only
the exact JSON types (dict, list, str, int, float, None) and only what passes every validator of the
field, in the field's own order; anything else, however harmless, is marshmallow's to answer.

The checks are read from the schemas (fields, validators, hooks) when the module that declares them is
imported. A field type, option or hook the compiler does not know raises Unsupported there, so a schema
change cannot silently leave the fast path checking less than marshmallow does. Validators and hooks
that are plain functions or methods are called as they are; only marshmallow's Range, Length and
Regexp are compiled into comparisons, from their own attributes. What marshmallow does not document
(the resolved hooks, a field's validator list, a List's item field) is read through
compat/marshmallow_internals.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator, Mapping
from functools import partial
from operator import itemgetter
from typing import Any

import marshmallow as ma
from marshmallow import validate

from flight_delay.compat.marshmallow_internals import field_validators, list_item_field, schema_hooks

# The marshmallow field classes whose load, for a value of the kind's exact JSON types, is the value
# itself (int, str) or float(value) (float), followed by the field's validators.
LOAD_KINDS: dict[type[ma.fields.Field], str] = {
    ma.fields.Integer: "int",
    ma.fields.Float: "float",
    ma.fields.String: "str",
}
# The field classes whose dump returns a value of this exact type unchanged.
DUMP_TYPES: dict[type[ma.fields.Field], type] = {
    ma.fields.Integer: int,
    ma.fields.Float: float,
    ma.fields.String: str,
}
# marshmallow's validators whose verdict depends on the value alone (they keep no state).
DETERMINISTIC_VALIDATOR_TYPES = (validate.Range, validate.Length, validate.Regexp)
# Hook options the fast paths reproduce; a hook with any other (or pass_collection) is refused.
KNOWN_HOOK_OPTIONS = frozenset({"pass_original", "skip_on_field_errors"})

# Returns marshmallow's exact answer, or None to decline.
FastPath = Callable[[Any], Any]

_MISSING = object()  # a key absent from the input (None is a value: JSON null)


class Unsupported(TypeError):
    """A schema feature the fast path compiler does not reproduce."""


def compile_request_loader(
    schema: ma.Schema,
    kinds: Mapping[type[ma.fields.Field], str] = LOAD_KINDS,
    deterministic: Collection[Callable[..., Any]] = (),
) -> FastPath:
    """Builds `schema.load` for a schema holding one list of nested items; None where it is unsure.

    `deterministic` names the plain-function validators whose verdict depends on the value alone: a
    value they accepted once in a request is not checked again (see compile_items_loader).
    """
    _require_plain_schema(schema)
    fields = _load_fields(schema)
    if len(fields) != 1:
        raise Unsupported(f"{type(schema).__name__}: the fast path reads exactly one field, a list")
    ((name, field),) = fields.items()
    bounds = _list_bounds(name, field)
    load_items = compile_items_loader(list_item_field(field).schema, kinds, deterministic)
    return _request_loader(schema, name, bounds, load_items)


def _request_loader(
    schema: ma.Schema, name: str, bounds: tuple[int, float], load_items: FastPath
) -> FastPath:
    """Wraps the items' loader in the request schema's hooks and the list's item count bounds."""
    min_items, max_items = bounds
    pre_hooks = _hooks(schema, "pre_load")
    validators = _hooks(schema, "validates_schema")
    post_hooks = _hooks(schema, "post_load")
    options = {"many": False, "partial": schema.partial, "unknown": schema.unknown}

    def load(data: Any) -> Any:
        """Returns what `schema.load(data)` would, or None when marshmallow should answer."""
        if type(data) is not dict:
            return None
        try:
            processed = _run_hooks(pre_hooks, data, data, options)
            if type(processed) is not dict or len(processed) != 1:
                return None
            items = processed.get(name)
            if type(items) is not list or not min_items <= len(items) <= max_items:
                return None
            loaded = load_items(items)
            if loaded is None:
                return None
            result = {name: loaded}
            for validator, pass_original in validators:
                _call_hook(validator, pass_original, result, data, options)
            return _run_hooks(post_hooks, result, data, options)
        except Exception:  # unforeseen input: marshmallow answers, exactly as without the fast path
            return None

    return load


def compile_items_loader(
    schema: ma.Schema,
    kinds: Mapping[type[ma.fields.Field], str] = LOAD_KINDS,
    deterministic: Collection[Callable[..., Any]] = (),
) -> FastPath:
    """Compiles loading a list of objects of scalar fields into one function; None where unsure.

    The function returns the list `schema.load` gives item by item, or None as soon as an item is in
    doubt. It may also raise where marshmallow would refuse (a validator's ValidationError, a number
    too large for a float): callers treat any exception as declining. Within one call, a value that
    passed a field whose checks are all deterministic is accepted again without re-running them.
    """
    _require_plain_schema(schema)
    if _hooks(schema, "pre_load"):
        raise Unsupported(f"{type(schema).__name__}: pre_load hooks on the items")
    namespace: dict[str, Any] = {"MISSING": _MISSING, "isfinite": math.isfinite}
    fields = _load_fields(schema)
    defaults = any(field.load_default is not ma.missing for field in fields.values())
    body = ["if type(item) is not dict:", "    return None", "get = item.get", "values = {}"]
    body += ["defaulted = 0"] if defaults else []
    memos = []
    for index, (name, field) in enumerate(fields.items()):
        var = f"f{index}"
        memo = f"{var}_accepted" if _memoizable(field, kinds, deterministic) else None
        memos += [memo] if memo else []
        body += _field_lines(var, name, field, kinds, namespace, memo)
    # Every key present was read by a field above (or the item was declined): more keys are unknown.
    body += [f"if len(values){' - defaulted' if defaults else ''} != len(item):", "    return None"]
    body += [*_hook_lines(schema, namespace), "loaded.append(values)"]
    lines = ["def load_items(items):", *(f"    {memo} = set()" for memo in memos), "    loaded = []"]
    lines += ["    for item in items:", *(f"        {line}" for line in body), "    return loaded"]
    source = "\n".join(lines)
    # The checks are generated from the schema's own fields, never from input; one function with the
    # loop inside keeps the cost per item a few microseconds.
    exec(compile(source, f"<fast load: {type(schema).__name__}>", "exec"), namespace)  # noqa: S102
    loader = namespace["load_items"]
    loader.source = source  # for tests and debugging
    return loader


def _memoizable(
    field: ma.fields.Field,
    kinds: Mapping[type[ma.fields.Field], str],
    deterministic: Collection[Callable[..., Any]],
) -> bool:
    """Tells whether a field's verdict on a value may be remembered within a call, and is worth it."""
    # Worth it: function validators cost a call each; int and str values are stored as they come
    # (floats are converted, and their Range checks cheap). Allowed: all those functions deterministic.
    functions = [v for v in field_validators(field) if type(v) not in DETERMINISTIC_VALIDATOR_TYPES]
    return (
        kinds.get(type(field)) in ("int", "str")
        and bool(functions)
        and all(f in deterministic for f in functions)
    )


def _field_lines(
    var: str,
    name: str,
    field: ma.fields.Field,
    kinds: Mapping[type[ma.fields.Field], str],
    namespace: dict,
    memo: str | None,
) -> list[str]:
    """Generates the lines that read, check and store one field of `item`, or return None."""
    kind = kinds.get(type(field))
    if kind is None:
        raise Unsupported(f"field {name!r}: {type(field).__name__} has no fast path")
    _require_plain_field(name, field, loading=True)
    key = repr(name)
    checks = " and ".join(_validator_checks(var, name, field, namespace)) or "True"
    if kind == "float":
        # float() of an int too large raises OverflowError: marshmallow says "Number too large".
        accept = "(type(value) is float or type(value) is int) and isfinite(value := float(value))"
        accept += f" and {checks}"
    elif memo:
        accept = f"type(value) is {kind} and (value in {memo} or ({checks} and {memo}.add(value) is None))"
    else:
        accept = f"type(value) is {kind} and {checks}"
    lines = [f"value = get({key}, MISSING)", "if value is not MISSING:"]
    if field.allow_none:
        lines += ["    if value is None:", f"        values[{key}] = None", f"    elif {accept}:"]
    else:
        lines += [f"    if {accept}:"]
    lines += [f"        values[{key}] = value", "    else:", "        return None"]
    if field.required:
        lines += ["else:", "    return None"]
    elif field.load_default is not ma.missing:
        lines += ["else:", *_default_lines(var, key, field.load_default, namespace)]
    return lines


def _default_lines(var: str, key: str, default: Any, namespace: dict) -> list[str]:
    """Generates what marshmallow does for an absent field with load_default: store it, unvalidated."""
    namespace[f"{var}_default"] = default
    call = "()" if callable(default) else ""
    return [f"    values[{key}] = {var}_default{call}", "    defaulted += 1"]


def _validator_checks(var: str, name: str, field: ma.fields.Field, namespace: dict) -> Iterator[str]:
    """Yields one boolean expression of `value` per validator of the field, in the field's order."""
    for index, validator in enumerate(field_validators(field)):
        ref = f"{var}_v{index}"
        namespace[ref] = validator
        if type(validator) is validate.Range:
            yield from _range_checks(ref, validator, namespace)
        elif type(validator) is validate.Length:
            yield from _length_checks(ref, validator, namespace)
        elif type(validator) is validate.Regexp:
            namespace[f"{ref}_match"] = validator.regex.match
            yield f"{ref}_match(value) is not None"
        elif callable(validator):
            # marshmallow's rule for validators: raising, or returning False, refuses the value.
            yield f"{ref}(value) is not False"
        else:
            raise Unsupported(f"field {name!r}: validator {validator!r} is not callable")


def _range_checks(ref: str, validator: validate.Range, namespace: dict) -> Iterator[str]:
    """Yields validate.Range's comparisons, with its own bounds and inclusivity."""
    namespace[f"{ref}_min"], namespace[f"{ref}_max"] = validator.min, validator.max
    if validator.min is not None:
        yield f"{ref}_min {'<=' if validator.min_inclusive else '<'} value"
    if validator.max is not None:
        yield f"value {'<=' if validator.max_inclusive else '<'} {ref}_max"


def _length_checks(ref: str, validator: validate.Length, namespace: dict) -> Iterator[str]:
    """Yields validate.Length's comparisons: `equal` alone when set, else its min and max."""
    namespace[f"{ref}_min"], namespace[f"{ref}_max"] = validator.min, validator.max
    namespace[f"{ref}_equal"] = validator.equal
    if validator.equal is not None:
        yield f"len(value) == {ref}_equal"
        return
    if validator.min is not None:
        yield f"{ref}_min <= len(value)"
    if validator.max is not None:
        yield f"len(value) <= {ref}_max"


def _hook_lines(schema: ma.Schema, namespace: dict) -> list[str]:
    """Generates the calls of the item schema's validators, then of its post_load hooks, as marshmallow."""
    namespace["OPTIONS"] = {"many": False, "partial": schema.partial, "unknown": schema.unknown}
    lines = []
    for index, (hook, pass_original) in enumerate(_hooks(schema, "validates_schema")):
        namespace[f"validator{index}"] = hook
        lines.append(f"validator{index}(values, {'item, ' if pass_original else ''}**OPTIONS)")
    for index, (hook, pass_original) in enumerate(_hooks(schema, "post_load")):
        namespace[f"post{index}"] = hook
        lines.append(f"values = post{index}(values, {'item, ' if pass_original else ''}**OPTIONS)")
    return lines


def _hooks(schema: ma.Schema, tag: str) -> list[tuple[Callable[..., Any], bool]]:
    """The schema's hooks of one kind, bound, with whether each takes the original input."""
    hooks = []
    for attr_name, pass_many, options in schema_hooks(schema, tag):
        if pass_many or not set(options) <= KNOWN_HOOK_OPTIONS:
            raise Unsupported(f"{type(schema).__name__}.{attr_name}: pass_collection or options {options}")
        hooks.append((getattr(schema, attr_name), bool(options.get("pass_original"))))
    return hooks


def _run_hooks(hooks: list[tuple[Callable[..., Any], bool]], data: Any, original: Any, options: dict) -> Any:
    """Applies processing hooks in order, as marshmallow does for a single object."""
    for hook, pass_original in hooks:
        data = _call_hook(hook, pass_original, data, original, options)
    return data


def _call_hook(hook: Callable[..., Any], pass_original: bool, data: Any, original: Any, options: dict) -> Any:
    """Calls one hook with the arguments marshmallow passes it."""
    return hook(data, original, **options) if pass_original else hook(data, **options)


def _list_bounds(name: str, field: ma.fields.Field) -> tuple[int, float]:
    """Reads the item count a list of nested objects allows from its Length validators."""
    nested = list_item_field(field) if type(field) is ma.fields.List else None
    if type(nested) is not ma.fields.Nested:
        raise Unsupported(f"field {name!r}: the fast path reads a List of Nested")
    _require_plain_field(name, field)
    _require_plain_field(name, nested)
    if nested.many or nested.only is not None or nested.exclude or nested.unknown not in (None, ma.RAISE):
        raise Unsupported(f"field {name!r}: Nested options many, only, exclude or unknown")
    low, high = 0, math.inf
    for validator in field_validators(field):
        if type(validator) is not validate.Length:
            raise Unsupported(f"field {name!r}: list validator {validator!r}")
        if validator.equal is not None:
            low, high = max(low, validator.equal), min(high, validator.equal)
        else:
            low = max(low, validator.min or 0)
            high = min(high, math.inf if validator.max is None else validator.max)
    return low, high


def _require_plain_schema(schema: ma.Schema) -> None:
    """Refuses schema options and hooks that change what loading means."""
    name = type(schema).__name__
    if schema.many or schema.partial or schema.unknown != ma.RAISE:
        raise Unsupported(f"{name}: many, partial or an unknown other than RAISE")
    if schema_hooks(schema, "validates"):
        raise Unsupported(f"{name}: @validates field validators")
    if type(schema).get_attribute is not ma.Schema.get_attribute or schema.dict_class is not dict:
        raise Unsupported(f"{name}: a custom get_attribute or dict_class")


def _require_plain_field(name: str, field: ma.fields.Field, *, loading: bool = False) -> None:
    """Refuses field options the fast path does not reproduce (a load_default: only when loading)."""
    if field.data_key is not None or field.attribute is not None:
        raise Unsupported(f"field {name!r}: data_key or attribute")
    if (field.load_default is not ma.missing and not loading) or field.dump_default is not ma.missing:
        raise Unsupported(f"field {name!r}: load_default or dump_default")
    if getattr(field, "pre_load", None) or getattr(field, "post_load", None):
        raise Unsupported(f"field {name!r}: field pre_load or post_load functions")
    if getattr(field, "as_string", False):
        raise Unsupported(f"field {name!r}: as_string")


def compile_dumper(schema: ma.Schema) -> FastPath:
    """Builds `schema.dump` for an object of scalars and lists of flat objects; None where unsure."""
    _require_plain_dump(schema)
    plan = [(name, _dump_reader(name, field)) for name, field in _dump_fields(schema).items()]

    def dump(obj: Any) -> dict[str, Any] | None:
        """Returns what `schema.dump(obj)` would, or None when marshmallow should answer."""
        # marshmallow reads obj[key], or getattr(obj, key, missing) when that fails: a plain dict holding
        # the key, or an object whose type cannot be indexed (asked of the type: hasattr is slow).
        if type(obj) is dict:
            get = obj.get
        elif hasattr(type(obj), "__getitem__"):
            return None
        else:
            get = partial(getattr, obj)
        result = {}
        try:
            for name, read in plan:
                value = read(get(name, _MISSING))
                if value is _MISSING:
                    return None
                result[name] = value
        except Exception:  # unforeseen object: marshmallow answers, exactly as without the fast path
            return None
        return result

    return dump


def _dump_reader(name: str, field: ma.fields.Field) -> Callable[[Any], Any]:
    """Returns the function dumping one field's value, or _MISSING when unsure."""
    _require_plain_field(name, field)
    expected = DUMP_TYPES.get(type(field))
    if expected is not None:
        return lambda value: value if type(value) is expected else _MISSING
    nested = list_item_field(field) if type(field) is ma.fields.List else None
    if type(nested) is ma.fields.Nested:
        _require_plain_field(name, nested)
        return _compile_items_dumper(name, nested)
    raise Unsupported(f"field {name!r}: {type(field).__name__} has no fast dump")


def _compile_items_dumper(name: str, nested: ma.fields.Nested) -> Callable[[Any], Any]:
    """Returns the function dumping a list of dicts with the nested schema's scalar fields."""
    schema = nested.schema
    _require_plain_dump(schema)
    if nested.many or schema.many or nested.only is not None or nested.exclude:
        raise Unsupported(f"field {name!r}: Nested options many, only or exclude")
    fields = _dump_fields(schema)
    names = tuple(fields)
    expected = []
    for field_name, field in fields.items():
        _require_plain_field(field_name, field)
        if type(field) not in DUMP_TYPES:
            raise Unsupported(f"field {name}.{field_name}: {type(field).__name__} has no fast dump")
        expected.append(DUMP_TYPES[type(field)])
    checks = [(itemgetter(field_name), kind) for field_name, kind in zip(names, expected, strict=True)]

    def dump_items(items: Any) -> Any:
        """Dumps a list of dicts holding exactly the fields, in order; _MISSING for anything else."""
        if type(items) is not list:
            return _MISSING
        if not items:
            return []
        # Column by column, in C: each item a dict, each value of its field's exact type.
        if set(map(type, items)) != {dict} or set(map(tuple, items)) != {names}:
            return _MISSING
        for getter, kind in checks:
            if set(map(type, map(getter, items))) != {kind}:
                return _MISSING
        # Same keys, same order, values dumped unchanged: marshmallow's output is a copy of each item.
        return list(map(dict, items))

    return dump_items


def _require_plain_dump(schema: ma.Schema) -> None:
    """Refuses dump hooks and schema options that change what dumping means."""
    name = type(schema).__name__
    if schema.many or schema_hooks(schema, "pre_dump") or schema_hooks(schema, "post_dump"):
        raise Unsupported(f"{name}: many, or pre_dump or post_dump hooks")
    if type(schema).get_attribute is not ma.Schema.get_attribute or schema.dict_class is not dict:
        raise Unsupported(f"{name}: a custom get_attribute or dict_class")


def _load_fields(schema: ma.Schema) -> dict[str, ma.fields.Field]:
    """The fields `schema.load` reads, in order: all of `schema.fields` but the dump_only ones."""
    # As marshmallow builds its (undocumented) load_fields, from the documented fields and dump_only.
    return {name: field for name, field in schema.fields.items() if not field.dump_only}


def _dump_fields(schema: ma.Schema) -> dict[str, ma.fields.Field]:
    """The fields `schema.dump` writes, in order: all of `schema.fields` but the load_only ones."""
    return {name: field for name, field in schema.fields.items() if not field.load_only}
