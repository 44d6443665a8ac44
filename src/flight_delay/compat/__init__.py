"""The only doors into dependencies' private APIs: one module per dependency, each pinned and tested.

Private means a name starting with an underscore in another package, or an attribute of its objects
that its documentation does not promise (an attribute holding a documented constructor argument
under that argument's own name counts as promised). Every use of one in src/ goes through the
module here named after its dependency, whose docstring says what is used, why no public API does
it, and what breaks if it changes. tests/test_compat.py checks each one and fails naming the change,
and pyproject.toml pins each of these dependencies to the minor version they were checked against.
"""
