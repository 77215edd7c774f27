"""Strict, local validation of every request body before anything is queued or sent to Daily.

Shared by the HTTP API, the Python client and the sandbox (which must refuse what Daily
refuses), so the rules live once, here, as tables of field -> rule. The rules are those of
``daily-api.md``; where Daily's documentation is silent we *refuse*: a 400 now is cheap, a
queued call that Daily rejects later is not. Decisions taken where the docs are vague:

- Types are never coerced: ``true`` is not an integer, ``1.0`` is not an integer, ``"5"`` is
  not a number, ``1`` is not a boolean, ``null`` is not a value of any field but ``metadata``.
- ``phoneNumber``: ``+``, a country code starting 1-9, 2 to 15 digits in all (country code
  and at least one more digit). No spaces or dashes.
- ``sipUri``: lowercase ``sip:`` or ``sips:``, ASCII, ``[user@]host[:port][;params]``;
  query parameters are SIP headers and must be ``X-name=value`` (``X-`` as documented).
  Beyond Daily's rules, because the URI becomes SIP headers of the INVITE: no control
  character anywhere, percent-encoded or not (``%0d%0a`` would add headers), and none of
  ``< > " ,`` or whitespace in the user part, parameters or header values.
- ``displayName`` and Daily's ``userId``: no control characters and no bidirectional
  overrides (they reach a phone's screen and SIP headers).
- ``extension``: 1 to 20 of ``0-9 * #``. DTMF ``tones``: 1 to 20 of ``0-9 A-D * #``;
  lowercase ``a-d`` is refused, not normalised, as are lowercase codec names.
- ``callerId``: a hyphenated UUID. ``waitBeforeExtensionDialSec`` is allowed without
  ``extension`` (Daily defaults it to 0 either way).
- Empty ``videoSettings`` / ``codecs`` objects mean Daily's defaults and are accepted.
- Transfer with ``refer: true`` (Daily's ``sipRefer``) hands the call off: ``callerId``,
  ``extension`` and ``waitBeforeExtensionDialSec`` are refused; ``toEndPoint`` may be SIP or PSTN.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from telephony import defaults as d
from telephony import machine

#: A rule yields ``(sub-path, broken rule)`` pairs; sub-path ``""`` is the field itself.
Rule = Callable[[Any], Iterator[tuple[str, str]]]


class ValidationError(ValueError):
    """Invalid input; ``fields`` maps each field path to the rule it broke, all at once."""

    fields: dict[str, str]

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = dict(fields)
        summary = "; ".join(f"{path or 'body'}: {rule}" for path, rule in self.fields.items())
        super().__init__(f"invalid request: {summary}")

    def __reduce__(self) -> tuple[type[ValidationError], tuple[dict[str, str]]]:
        # The default reduce would call __init__ with the message; keep it picklable for rq.
        return (type(self), (self.fields,))


# --- Rule builders --------------------------------------------------------------------------------


def _rule(ok: Callable[[Any], bool], text: str) -> Rule:
    def check(value: Any) -> Iterator[tuple[str, str]]:
        if not ok(value):
            yield "", text

    return check


def _pattern(regex: str, text: str) -> Rule:
    compiled = re.compile(regex)  # always bounded ({m,n}), so no length check is needed
    return _rule(lambda v: isinstance(v, str) and compiled.fullmatch(v) is not None, text)


def _integer(low: int, high: int) -> Rule:
    # ``type(v) is int``: bool is a subclass of int, and 1.0 is not an integer in our API.
    return _rule(
        lambda v: type(v) is int and low <= v <= high, f"must be an integer from {low} to {high}"
    )


def is_unicode(value: str) -> bool:
    """Whether ``value`` is valid Unicode: JSON's ``\\ud800`` escape yields a lone surrogate,
    which neither UTF-8 (Redis, the wire) nor Lua's cjson can hold."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _text(max_len: int) -> Rule:
    return _rule(
        lambda v: isinstance(v, str) and 0 < len(v) <= max_len and is_unicode(v),
        f"must be a string of 1 to {max_len} characters (valid Unicode)",
    )


#: Bidirectional controls: an override (U+202E) makes a phone show text reversed.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _shown(value: str) -> bool:
    """Text a person will see (a caller's name on a phone): no control characters (CR, LF,
    NUL... would also split SIP headers) and no bidirectional controls."""
    return not any(unicodedata.category(c) == "Cc" or c in _BIDI for c in value)


def _display_text(max_len: int) -> Rule:
    return _rule(
        lambda v: isinstance(v, str) and 0 < len(v) <= max_len and is_unicode(v) and _shown(v),
        f"must be a string of 1 to {max_len} characters, without control or bidirectional "
        "override characters",
    )


def _is_json(value: Any, depth: int = 0) -> bool:
    """Plain JSON that every reader holds exactly, so what we store and send, and what comes
    back, is exactly what was validated."""
    if depth > d.JSON_MAX_DEPTH:
        return False
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, str):
        return is_unicode(value)
    if isinstance(value, int):
        return -d.JSON_MAX_INT <= value <= d.JSON_MAX_INT
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_json(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return all(
            isinstance(k, str) and is_unicode(k) and _is_json(v, depth + 1)
            for k, v in value.items()
        )
    return False


_JSON_TEXT = (
    "(valid Unicode, no NaN/Infinity, integers within ±2^53, "
    f"at most {d.JSON_MAX_DEPTH} levels deep)"
)
_JSON = _rule(_is_json, f"must be a JSON value {_JSON_TEXT}")
_JSON_OBJECT = _rule(
    lambda v: isinstance(v, dict) and _is_json(v), f"must be an object {_JSON_TEXT}"
)


def _object(rules: Mapping[str, Rule]) -> Rule:
    def check(value: Any) -> Iterator[tuple[str, str]]:
        if not isinstance(value, dict):
            yield "", "must be a JSON object"
            return
        for path, text in _walk(value, rules).items():
            yield "." + path, text

    return check


def _codec_list(names: tuple[str, ...]) -> Rule:
    one_of = f"must be one of {', '.join(names)}"

    def check(value: Any) -> Iterator[tuple[str, str]]:
        if not isinstance(value, list) or not value:
            yield "", f"must be a non-empty array of {', '.join(names)}"
            return
        seen: set[str] = set()
        for i, item in enumerate(value):
            if not (isinstance(item, str) and item in names):
                yield f"[{i}]", one_of
            elif item in seen:
                yield f"[{i}]", "duplicate codec"
            else:
                seen.add(item)

    return check


# --- Field rules ----------------------------------------------------------------------------------

#: Patterns of the fields that have one, unanchored (matched whole); the OpenAPI document
#: anchors these same strings, so the two can never disagree.
E164_PATTERN = rf"\+[1-9][0-9]{{1,{d.E164_MAX_DIGITS - 1}}}"
ROOM_PATTERN = rf"[A-Za-z0-9_-]{{1,{d.ROOM_NAME_MAX}}}"
CALL_ID_PATTERN = rf"[A-Za-z0-9._:-]{{1,{d.USER_ID_MAX}}}"
#: A caller-chosen id: a call id outside the dial-in sessions' prefix, in any case.
NEW_CALL_ID_PATTERN = (
    "(?!" + "".join(f"[{c.upper()}{c}]" if c.isalpha() else c
                    for c in d.DIALIN_ID_PREFIX) + ")" + CALL_ID_PATTERN
)  # fmt: skip
UUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
EXTENSION_PATTERN = rf"[0-9*#]{{1,{d.EXTENSION_MAX}}}"
TONES_PATTERN = rf"[{re.escape(d.DTMF_TONES)}]{{1,{d.DTMF_MAX_TONES}}}"
IDEMPOTENCY_KEY_PATTERN = rf"[!-~]{{1,{d.IDEMPOTENCY_KEY_MAX}}}"
CURSOR_PATTERN = r"[0-9]+:.+"

_E164_TEXT = f"must be E.164: '+' then country code and up to {d.E164_MAX_DIGITS} digits"
_E164 = _pattern(E164_PATTERN, _E164_TEXT)

#: RFC 3261's characters of a URI's user part and parameters, less ``,`` (and ``"<>``,
#: whitespace, which it never allows): Daily turns the URI into an INVITE's headers, where a
#: comma separates values and quotes and angle brackets delimit them.
_USER_CHARS = r"[A-Za-z0-9\-_.!~*'()&=+$;/%]"
_PARAM_CHARS = r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$%]"
_SIP_TARGET = re.compile(
    rf"sips?:(?:{_USER_CHARS}+@)?"  # optional user@ (may carry ;params, e.g. ;phone-context=)
    r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])"  # host name, IPv4 or [IPv6]
    r"(?::[0-9]{1,5})?"  # port
    rf"(?:;{_PARAM_CHARS}+(?:={_PARAM_CHARS}+)?)*"  # URI parameters such as ;transport=tls
)
#: Query parameters become SIP headers: ``X-name=value``, the value of the same safe characters.
_SIP_HEADER = re.compile(rf"X-[A-Za-z0-9.!%*_+`'~-]+={_PARAM_CHARS.replace('&', '')}+")
#: A percent-encoded control character (CR, LF, NUL, any C0, DEL): RFC 3261 (19.1.1) decodes
#: the escapes of URI headers, so ``%0d%0a`` would end a header and start the caller's own.
_ESCAPED_CONTROL = re.compile(r"%(?:[01][0-9A-Fa-f]|7[Ff])")
#: The whole rule as one pattern (the OpenAPI document's, unanchored).
SIP_URI_PATTERN = (
    rf"(?!.*{_ESCAPED_CONTROL.pattern}){_SIP_TARGET.pattern}"
    rf"(?:\?{_SIP_HEADER.pattern}(?:&{_SIP_HEADER.pattern})*)?"
)
#: A character a person may be shown: not a control (Cc) nor a bidirectional control.
SHOWN_CHAR_PATTERN = r"[^\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"


def _sip_uri(value: Any) -> Iterator[tuple[str, str]]:
    if not (isinstance(value, str) and value.isascii() and value.isprintable()):
        yield "", "must be a SIP URI of printable ASCII characters"
        return
    target, _, query = value.partition("?")
    if len(value) > d.SIP_URI_MAX:
        yield "", f"must be a SIP URI of at most {d.SIP_URI_MAX} characters"
    elif _ESCAPED_CONTROL.search(value):
        yield "", "must not hold control characters (CR, LF, NUL...), percent-encoded or not"
    elif not _SIP_TARGET.fullmatch(target):
        yield (
            "",
            (
                "must be a SIP URI: 'sip:' or 'sips:' then user@host or host, without "
                '< > " , or whitespace in the user part or parameters'
            ),
        )
    elif "?" in value and not all(_SIP_HEADER.fullmatch(h) for h in query.split("&")):
        yield "", "query parameters are SIP headers and must be X-name=value, joined by '&'"


def _endpoint(value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, str) and value.startswith("+"):
        yield from _E164(value)
    elif isinstance(value, str) and value.startswith(("sip:", "sips:")):
        yield from _sip_uri(value)
    else:
        yield "", "must be a sip: (or sips:) URI or an E.164 phone number ('+' then digits)"


_ROOM_TEXT = f"must be 1 to {d.ROOM_NAME_MAX} characters of A-Z a-z 0-9 _ -"
_ROOM = _pattern(ROOM_PATTERN, _ROOM_TEXT)
_ROOM_RE = re.compile(ROOM_PATTERN)
_SESSION = _text(d.SESSION_ID_MAX)
_BOOLEAN = _rule(lambda v: isinstance(v, bool), "must be true or false")
_UUID = _pattern(UUID_PATTERN, "must be a UUID (the id of a purchased number)")
_EXTENSION = _pattern(EXTENSION_PATTERN, f"must be 1 to {d.EXTENSION_MAX} characters of 0-9 * #")
_WAIT = _integer(0, d.WAIT_BEFORE_EXTENSION_MAX)
_TONES = _pattern(
    TONES_PATTERN, f"must be 1 to {d.DTMF_MAX_TONES} DTMF tones of 0-9 A-D * # (uppercase)"
)

_DIALOUT: dict[str, Rule] = {
    "sipUri": _sip_uri,
    "phoneNumber": _E164,
    "displayName": _display_text(d.DISPLAY_NAME_MAX),
    "userId": _display_text(d.USER_ID_MAX),
    "callerId": _UUID,
    "extension": _EXTENSION,
    "waitBeforeExtensionDialSec": _WAIT,
    "video": _BOOLEAN,
    "videoSettings": _object(
        {
            "width": _integer(1, d.VIDEO_WIDTH_MAX),
            "height": _integer(1, d.VIDEO_HEIGHT_MAX),
            "fps": _integer(1, d.VIDEO_FPS_MAX),
            "videoBitrate": _integer(1, d.VIDEO_BITRATE_MAX),
        }
    ),
    "codecs": _object({"audio": _codec_list(d.AUDIO_CODECS), "video": _codec_list(d.VIDEO_CODECS)}),
    "permissions": _JSON_OBJECT,
}
#: Our own fields of ``POST /v1/calls``, beside Daily's dial-out options.
_CALL: dict[str, Rule] = {
    "room": _ROOM,
    # The call id travels in URLs and Redis keys: narrower than Daily's "string <= 36"; the
    # dial-in sessions' prefix is reserved (their records' ids).
    "userId": _pattern(
        NEW_CALL_ID_PATTERN,
        f"must be 1 to {d.USER_ID_MAX} characters of A-Z a-z 0-9 . _ : -, not starting with "
        f"{d.DIALIN_ID_PREFIX!r} (reserved for dial-in sessions)",
    ),
    "ringTimeoutSec": _integer(1, d.RING_TIMEOUT_MAX),
    "maxDurationSec": _integer(1, d.MAX_DURATION_MAX),
    "metadata": _JSON,
}
_DTMF: dict[str, Rule] = {
    "tones": _TONES,
    "method": _rule(lambda v: v in d.DTMF_METHODS, f"must be one of {', '.join(d.DTMF_METHODS)}"),
    "digitDurationMs": _integer(d.DTMF_DURATION_MIN, d.DTMF_DURATION_MAX),
}
_TRANSFER: dict[str, Rule] = {
    "toEndPoint": _endpoint,
    "callerId": _UUID,
    "extension": _EXTENSION,
    "waitBeforeExtensionDialSec": _WAIT,
}
_PSTN_ONLY = "only allowed with phoneNumber (PSTN)"
_PSTN_TARGET_ONLY = "only allowed when toEndPoint is a phone number (PSTN)"
_VIDEO_ONLY = "only allowed with video: true (SIP)"
_REFER_REFUSED = ("callerId", "extension", "waitBeforeExtensionDialSec")
_NOT_WITH_REFER = "not allowed with refer: true (a SIP REFER hands the call off)"


# --- Walking a body -------------------------------------------------------------------------------


def _walk(data: Mapping[Any, Any], rules: Mapping[str, Rule]) -> dict[str, str]:
    problems: dict[str, str] = {}
    for key, value in data.items():
        rule = rules.get(key) if isinstance(key, str) else None
        if rule is None:
            problems[str(key)] = "unknown field"
            continue
        for sub, text in rule(value):
            problems.setdefault(key + sub, text)
    return problems


def _as_body(data: object) -> dict[Any, Any]:
    if not isinstance(data, dict):
        raise ValidationError({"": "body must be a JSON object"})
    return data


def _check(
    data: object, rules: Mapping[str, Rule], required: Iterable[str] = ()
) -> tuple[dict[Any, Any], dict[str, str]]:
    body = _as_body(data)
    problems = _walk(body, rules)
    for name in required:
        if name not in body:
            problems.setdefault(name, "required")
    return body, problems


def _refuse(
    problems: dict[str, str], body: Mapping[Any, Any], names: Iterable[str], text: str
) -> None:
    for name in names:
        if name in body:
            problems.setdefault(name, text)


def _done(body: Mapping[Any, Any], problems: dict[str, str]) -> dict[str, Any]:
    if problems:
        raise ValidationError(problems)
    # A JSON round trip gives a deep copy of plain types: exactly what goes on the wire.
    clean: dict[str, Any] = json.loads(json.dumps(body))
    return clean


# --- Public API -----------------------------------------------------------------------------------


def dialout_body(data: object) -> dict[str, Any]:
    """Daily's ``dialOut/start`` body, with only Daily's keys; returns a clean copy."""
    body, problems = _check(data, _DIALOUT)
    sip, pstn = "sipUri" in body, "phoneNumber" in body
    if sip == pstn:
        for name in ("phoneNumber", "sipUri"):
            problems.setdefault(name, "exactly one of phoneNumber and sipUri is required")
    if sip and not pstn:
        _refuse(problems, body, ("callerId", "extension"), _PSTN_ONLY)
    if pstn and not sip:
        _refuse(problems, body, ("video",), "only allowed with sipUri (SIP)")
    if body.get("video") is not True:
        _refuse(problems, body, ("videoSettings",), _VIDEO_ONLY)
        codecs = body.get("codecs")
        if isinstance(codecs, dict) and "video" in codecs:
            problems.setdefault("codecs.video", _VIDEO_ONLY)
    return _done(body, problems)


@dataclass(frozen=True)
class CallRequest:
    """A validated ``POST /v1/calls`` body, split into Daily's part and ours."""

    room: str
    dialout: dict[str, Any]
    call_id: str | None
    ring_timeout: int | None
    max_duration: int | None
    metadata: Any

    @property
    def destination(self) -> str:
        return str(self.dialout.get("phoneNumber") or self.dialout["sipUri"])

    @property
    def is_pstn(self) -> bool:
        return "phoneNumber" in self.dialout


def call_request(data: object) -> CallRequest:
    """``room`` + Daily's dial-out options (minus ``userId``, which becomes the call id) + ours."""
    body = _as_body(data)
    ours, problems = _check({k: v for k, v in body.items() if k in _CALL}, _CALL, ("room",))
    dialout: dict[str, Any] = {}
    try:
        dialout = dialout_body({k: v for k, v in body.items() if k not in _CALL})
    except ValidationError as exc:
        problems.update(exc.fields)
    clean = _done(ours, problems)
    return CallRequest(
        room=clean["room"],
        dialout=dialout,
        call_id=clean.get("userId"),
        ring_timeout=clean.get("ringTimeoutSec"),
        max_duration=clean.get("maxDurationSec"),
        metadata=clean.get("metadata", {}),
    )


def dtmf_request(data: object) -> dict[str, Any]:
    """Our ``POST /v1/calls/{id}/dtmf`` body."""
    return _done(*_check(data, _DTMF, ("tones",)))


def daily_dtmf_body(data: object) -> dict[str, Any]:
    """Daily's ``dialOut/sendDTMF`` body (with the SDKs' ``method``), for the sandbox."""
    return _done(*_check(data, {"sessionId": _SESSION, **_DTMF}, ("sessionId", "tones")))


def _transfer(data: object, rules: Mapping[str, Rule], required: Iterable[str]) -> dict[str, Any]:
    body, problems = _check(data, rules, required)
    target = body.get("toEndPoint")
    if isinstance(target, str) and target.startswith(("sip:", "sips:")):
        _refuse(problems, body, ("callerId", "extension"), _PSTN_TARGET_ONLY)
    if body.get("refer") is True:
        _refuse(problems, body, _REFER_REFUSED, _NOT_WITH_REFER)
    return _done(body, problems)


def transfer_request(data: object) -> dict[str, Any]:
    """Our ``POST /v1/calls/{id}/transfer`` body; ``refer: true`` selects Daily's sipRefer."""
    return _transfer(data, {**_TRANSFER, "refer": _BOOLEAN}, ("toEndPoint",))


def daily_transfer_body(data: object, *, refer: bool) -> dict[str, Any]:
    """Daily's ``sipCallTransfer`` body, or its ``sipRefer`` body ``{sessionId, toEndPoint}``."""
    rules = {"sessionId": _SESSION, **(_TRANSFER if not refer else {"toEndPoint": _endpoint})}
    return _transfer(data, rules, ("sessionId", "toEndPoint"))


def daily_stop_body(data: object) -> dict[str, Any]:
    """Daily's ``dialOut/stop`` body."""
    return _done(*_check(data, {"sessionId": _SESSION}, ("sessionId",)))


def room_name(value: object, field: str = "room") -> str:
    """A Daily room name, as found in URL paths and request bodies."""
    if isinstance(value, str) and _ROOM_RE.fullmatch(value):
        return value
    raise ValidationError({field: _ROOM_TEXT})


# --- Names and queries of our own API ------------------------------------------------------

_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
_CURSOR = re.compile(CURSOR_PATTERN)


def camel(name: str) -> str:
    """Daily's name of a snake_case option: ``video_settings`` → ``videoSettings``."""
    return re.sub(r"_([a-z])", lambda m: m[1].upper(), name)


def idempotency_key(value: str, name: str = "idempotency_key") -> str:
    """An ``Idempotency-Key`` goes into a Redis key: bounded, printable ASCII, no spaces."""
    if not _IDEMPOTENCY_KEY.fullmatch(value):
        raise ValidationError(
            {
                name: f"must be 1 to {d.IDEMPOTENCY_KEY_MAX} printable ASCII "
                "characters without spaces"
            }
        )
    return value


def listing(state: str | None, room: str | None, limit: int, cursor: str | None) -> None:
    """The filters of a listing, the same for ``GET /v1/calls`` and ``TelephonyClient.list``."""
    problems: dict[str, str] = {}
    if state is not None and state not in machine.VISIBLE_STATES:
        problems["state"] = f"must be one of {', '.join(machine.VISIBLE_STATES)}"
    if room is not None:
        try:
            room_name(room)
        except ValidationError as exc:
            problems.update(exc.fields)
    if not 1 <= limit <= d.PAGE_MAX:
        problems["limit"] = f"must be an integer from 1 to {d.PAGE_MAX}"
    if cursor is not None and not _CURSOR.fullmatch(cursor):
        problems["cursor"] = "must be a cursor returned by a previous page"
    if problems:
        raise ValidationError(problems)


def feed_query(after: int, limit: int) -> None:
    """A page of the feed, the same for ``GET /v1/events`` and ``TelephonyClient.events``."""
    problems: dict[str, str] = {}
    if not 0 <= after < 2**63:  # Redis stream ids are 64-bit
        problems["after"] = "must be a seq: an integer from 0 to 2**63-1"
    if not 1 <= limit <= d.PAGE_MAX:
        problems["limit"] = f"must be an integer from 1 to {d.PAGE_MAX}"
    if problems:
        raise ValidationError(problems)


def stop_request(data: object) -> None:
    """``POST /v1/calls/{id}/stop`` takes no body, or ``{}``."""
    if data is not None:
        _done(*_check(data, {}))
