"""Hypothesis strategies shared by the property tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def json_values(
    *,
    strings: st.SearchStrategy[str] | None = None,
    keys: st.SearchStrategy[str] | None = None,
    items: int = 4,
    max_leaves: int = 20,
) -> st.SearchStrategy[Any]:
    """JSON documents as orjson decodes them, with these string leaves and object keys.

    Integers stay within 64 bits: orjson decodes larger ones as floats, so no request body holds
    one. Floats are finite, as in JSON.
    """
    leaf = (
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**63 - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | (st.text() if strings is None else strings)
    )
    names = st.text(max_size=8) if keys is None else keys
    return st.recursive(
        leaf,
        lambda inner: (
            st.lists(inner, max_size=items) | st.dictionaries(names, inner, max_size=items)
        ),
        max_leaves=max_leaves,
    )
