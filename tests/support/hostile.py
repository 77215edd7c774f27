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

BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

#: SIP URIs and display names: every documented form, and what would inject SIP headers.
SIP_ACCEPTED = [
    "sip:bob@example.com?X-a=b&X-c=d",
    "sips:bob@example.com",
    "sip:bob@example.com:5061",
    "sip:bob@example.com;transport=tls",
    "sips:bob@example.com:5061;transport=tls",
    "sip:+1234;phone-context=example.com@gw.example.com",
    "sip:a%20b@example.com",
    "sip:bob@example.com?X-Account=42&X-Team=sales",
]
SIP_REFUSED = [
    "sip:bob%0d%0aVia:evil@example.com",
    "sip:bob%0D%0A@example.com",
    "sip:bob%00@example.com",
    "sip:bob@example.com?X-a=b%0d%0aX-Evil:1",
    "sip:bob@example.com?X-a=%00",
    "sip:bob@example.com;x=%0a",
    "sip:bob%7f@x.com",
    "sip:bob\r\n@example.com",
    "sip:bob\x00@example.com",
    "sip:<bob>@example.com",
    'sip:"bob"@example.com',
    "sip:bob,eve@example.com",
    "sip:bob eve@example.com",
    "sip:bob@example.com;x=<y>",
    'sip:bob@example.com;x="y"',
    "sip:bob@example.com;a,b",
    "sip:bob@example.com;a b",
    "sip:bob@example.com?X-a=<b>",
    "sip:bob@example.com?X-a=b,c",
    "sip:bob@example.com?X-a=b c",
]
NAME_REFUSED = ["Bob\r\nVia: evil", "Bob\x00", "Bob\n", "\u202eevil", "a\u2066b", "tab\tname"]
NAME_ACCEPTED = ["Bob", "Zoë Ünal", "محمد", "李小龙", "Bob (sales) #2", "😀"]
