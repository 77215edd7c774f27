"""Hostile values for property-based tests: what an attacker (or a broken provider) sends."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

FRAGMENTS = ["\ud800", "\udfff", "\r\n", "\x00", "%0d%0a", "%00", "\u202e", "\u200f",
             "' OR 1=1 --", "../../", "<script>", "\\", '"', "é", "😀", "a" * 3000, "sip:",
             "+1555", "X-a=b&", "{}", "null"]  # fmt: skip
HOSTILE_TEXT = st.lists(st.sampled_from(FRAGMENTS), max_size=4).map("".join)
HOSTILE: st.SearchStrategy[Any] = st.deferred(
    lambda: (
        st.none()
        | st.booleans()
        | st.integers(-(2**80), 2**80)
        | st.sampled_from([2**53, 2**53 + 1, -(2**53) - 1, 1.0, 1e308, -0.0])
        | HOSTILE_TEXT
        | st.integers(1, 60).map(lambda depth: json.loads("[" * depth + "]" * depth))
        | st.lists(HOSTILE, max_size=3)
        | st.dictionaries(HOSTILE_TEXT, HOSTILE, max_size=3)
    )
)
