"""The call record's one definition: every field comes back exactly as it was written."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from telephony import record


def round_trip(fields: dict[str, Any]) -> dict[str, Any]:
    stored = record.encode(fields)
    raw = {name.encode(): str(value).encode() for name, value in stored.items()}
    return record.decode(raw, internal=True)


@pytest.mark.parametrize(
    "metadata",
    ["hello", "123", '{"a":1}', None, 0, 2**53, -(2**53), 1.5, True, [], {}, [[]],
     {"nested": {"list": [1, "2", None, False]}}, "ü\u202e\x00"],
)  # fmt: skip
def test_metadata_comes_back_exactly_as_given(metadata: Any) -> None:
    back = round_trip({"metadata": metadata})["metadata"]
    assert back == metadata and type(back) is type(metadata)


def test_every_field_round_trips_and_times_have_one_format() -> None:
    fields = {"id": "c-1", "kind": "dialout", "room": "r", "destination": "+15550100000",
              "state": "queued", "attempts": 3, "ringTimeoutSec": 30, "watchDue": 1733582400123,
              "options": {"displayName": "x", "codecs": []}, "dialingSince": 1733582400.5,
              "nextAttemptAt": "2026-12-07T10:00:00.000Z"}  # fmt: skip
    back = round_trip(fields)
    assert back["dialingSince"] == "2024-12-07T14:40:00.500Z"  # a UNIX time becomes ISO
    assert {k: v for k, v in back.items() if k in fields and k != "dialingSince"} == {
        k: v for k, v in fields.items() if k != "dialingSince"
    }
    assert back["options"]["codecs"] == []  # not {} (Lua's cjson would make it one)


def test_the_api_sees_the_contract_fields_and_not_the_bookkeeping() -> None:
    shown = record.decode({b"state": b"queued", b"watchDue": b"1", b"startJob": b"j"})
    assert set(record.ALWAYS) <= set(shown) and "watchDue" not in shown
    assert shown["metadata"] == {} and shown["attempts"] == 0
    shown["metadata"]["x"] = 1
    assert record.decode({})["metadata"] == {}  # the default is not shared


def test_undefined_fields_and_wrong_types_are_refused_on_write() -> None:
    with pytest.raises(KeyError):
        record.encode({"nmae": "x"})
    with pytest.raises(TypeError):
        record.encode({"attempts": "3"})
    with pytest.raises(TypeError):
        record.encode({"+error": 1})
    assert record.encode({"error": None, "metadata": None}) == {"error": None, "metadata": "null"}


def test_a_value_that_cannot_be_read_says_which_field() -> None:
    with pytest.raises(record.RecordError, match="metadata"):
        record.decode({b"metadata": b"hello"})


def test_the_workers_read_every_field_by_its_python_name() -> None:
    assert {f.name for f in dataclasses.fields(record.CallRecord)} == set(record.BY_ATTRIBUTE)
    stored = record.encode(record.values(
        id="c-1", state="ringing", attempts=2, watch_due=1733582400123, dialing_since=1.5,
        stop_requested=1, metadata=None, options={"codecs": []}))  # fmt: skip
    raw = {name.encode(): str(value).encode() for name, value in stored.items()}
    call = record.CallRecord.restore({**raw, b"fieldOfANewerVersion": b"x"}, "c-1")
    assert (call.id, call.state, call.attempts, call.watch_due) == ("c-1", "ringing", 2,
                                                                   1733582400123)  # fmt: skip
    assert call.dialing_since == "1970-01-01T00:00:01.500Z" and call.stop_requested == 1
    assert call.metadata is None and call.options == {"codecs": []} and call.session_id is None
    assert record.values(attempts=record.Add(1), stop_reason="x") == {
        "+attempts": 1, "stopReason": "x"}  # fmt: skip
