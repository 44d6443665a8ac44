"""marshmallow's internals read by the predict schemas' fast paths (api/fastpath.py).

What is used:
- `Schema._hooks`: per tag ("pre_load", "post_load", "validates_schema", "validates", "pre_dump",
  "post_dump"), the list of `(method name, pass_collection, options)` marshmallow built from the
  decorated methods, in the order it runs them; a tag without hooks reads as an empty list.
- `List.inner`: the field instance a List loads each item with (the constructor's `cls_or_instance`).
- `Field.validators`: the field's validators as the list marshmallow runs, in order (the
  constructor's `validate`, normalized).

Why no public API does it: the fast paths reproduce exactly what `Schema.load` and `Schema.dump` do,
so they must see the hooks and validators marshmallow itself will run; marshmallow exposes neither
the resolved hooks nor the normalized validators, nor a List's item field.

What breaks if it changes: the fast paths are compiled when api/schemas.py is imported, so a change
in these shapes fails that import (KeyError, AttributeError, unpacking errors) and with it the app's
start; a subtler change (say, an order) could make a fast path answer differently from marshmallow,
which tests/test_compat.py and the fast path tests check.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma

# marshmallow's hook tags (marshmallow.decorators' constants) the fast paths read.
HOOK_TAGS = ("pre_load", "post_load", "validates_schema", "validates", "pre_dump", "post_dump")


def schema_hooks(schema: ma.Schema, tag: str) -> list[tuple[str, bool, dict[str, Any]]]:
    """The schema's hooks of one tag as marshmallow runs them: (method name, pass_collection, options)."""
    return list(schema._hooks[tag])


def list_item_field(field: ma.fields.List) -> ma.fields.Field:
    """The field a List loads and dumps each of its items with."""
    return field.inner


def field_validators(field: ma.fields.Field) -> list[Any]:
    """The field's validators in the order marshmallow calls them."""
    return list(field.validators)
