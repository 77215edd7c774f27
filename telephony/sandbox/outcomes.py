"""The magic destinations: a dial-out's outcome is chosen by its destination alone.

Like a payment provider's test cards, every behaviour of Daily the service must survive has a
number (and a SIP user) that produces it on demand, deterministically. Delays are seconds at
time scale 1.0; the sandbox multiplies each by its ``time_scale``.

| phoneNumber | sipUri user | outcome |
|---|---|---|
| `+15550100000` (and any number not below) | `sip:answer@...` (and any other) | `dialout.connected` after 0.3 s, `dialout.answered` after 1.0 s, then up until stopped (stop → `dialout.stopped`) |
| `+15550100001` | `sip:noanswer@` | connected after 0.3 s, never answered (rings until stopped) |
| `+15550100002` | `sip:reject@` | connected after 0.3 s, then `dialout.error` (`error_msg` "Call rejected: busy") at 0.8 s |
| `+15550100003` | `sip:hangup@` | connected 0.3 s, answered 1.0 s, the far end hangs up at 3.0 s → `dialout.stopped` |
| `+1555010004N` (N=1..9) | `sip:unavailableN@` | the first N starts with the same `userId` (or destination when no `userId`) answer 400 `invalid-request-error` "TEMPORARILY_NOT_AVAILABLE: ..."; then as answer |
| `+1555010005N` (N=1..9) | `sip:overloadedN@` | the same, but the refusals are 503 `server-error` "TEMPORARILY_NOT_AVAILABLE: ..." |
| `+1555010006D` (D=1..9) | `sip:slowD@` | placed (webhooks flow as answer) but the start response is delayed D seconds: client timeouts, ambiguity |
| `+15550100070` | `sip:shuffle@` | every webhook sent twice (same `id`), in a shuffled order (answered before connected...), seeded by the session id |
| `+15550100080` | `sip:early@` | connected + answered delivered before the start response is sent (the response waits for them) |
| `+15550100090` | `sip:notallowed@` | 403 `forbidden-error` "NOT_ALLOWED: dial-out is not enabled for this room" (no call) |
| `+15550100091` | `sip:inprogress@` | 400 `invalid-request-error` "DIALOUT_IN_PROGRESS: a dial-out is already being started" (no call) |
| `+15550100092` | `sip:servererror@` | 500 `server-error` "internal error" (no call) |
| `+15550100093` | `sip:drop@` | the call IS placed (webhooks flow as answer) but the connection is closed without any response |
| `+15550100094` | `sip:warning@` | as answer, plus a `dialout.warning` at 0.5 s, after connect |
| `+15550100095` | `sip:hang@` | never answered and NO call placed: the request is held open until the client gives up or 60 s pass (at least 1 s at any time scale), then the connection is closed without any response; `/_sandbox/starts` shows it `hung`, status null, no `sessionId` (it did use the rate limit) |
| `+15550100096` | `sip:lostend@` | as hangup, but Daily loses the final webhook: the leg leaves the room at 3.0 s and `dialout.stopped` is never sent (nor logged) |

Rooms: a room named `not-hosting` answers 404 `not-found-error` "Room is not hosting a call"
on every `/rooms/{room}/...` endpoint; every other valid room name hosts a call.

A start without `userId` gets webhooks without `user_id`: Daily's `user_id` is the caller's
`userId` echoed back, so there is nothing to echo, and inventing one would hide a service that
relies on a field it never set.
"""  # noqa: E501

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from telephony.sandbox import errors
from telephony.sandbox.events import ANSWERED, CONNECTED, ERROR, STOPPED, WARNING

NOT_HOSTING_ROOM = "not-hosting"


@dataclass(frozen=True)
class Step:
    """One event of a call's timeline, ``at`` seconds after the start (time scale 1.0)."""

    at: float
    type: str
    error_msg: str | None = None


@dataclass(frozen=True)
class Refusal:
    """The error answer a start gets instead of a call."""

    status: int
    error: str
    info: str


@dataclass(frozen=True)
class Outcome:
    name: str
    steps: tuple[Step, ...] = ()
    #: Answer this instead of placing a call (the first ``refusals`` times, if that is set).
    refusal: Refusal | None = None
    #: Starts refused per ``userId`` (or destination) before the call goes through; 0 = always.
    refusals: int = 0
    #: Seconds the start response is held after the call was placed.
    response_delay: float = 0.0
    #: Send each event twice, released in shuffled batches.
    shuffle: bool = False
    #: Hold the start response until the first events were delivered.
    early: bool = False
    #: Close the connection instead of answering the start.
    drop: bool = False
    #: Place nothing and never answer: hold the start open this many seconds (or until the
    #: client leaves), then close the connection; 0 = the start is answered.
    hang: float = 0.0
    #: The leg ends on its timeline but its final webhook is never sent: only presence knows.
    lose_final: bool = False


ANSWER = (Step(0.3, CONNECTED), Step(1.0, ANSWERED))
_TNA = "TEMPORARILY_NOT_AVAILABLE: no dial-out workers available, try again shortly"
UNAVAILABLE = Refusal(400, errors.INVALID_REQUEST, _TNA)
OVERLOADED = Refusal(503, errors.SERVER, _TNA)
NOT_ALLOWED = Refusal(403, errors.FORBIDDEN, "NOT_ALLOWED: dial-out is not enabled for this room")
IN_PROGRESS = Refusal(
    400, errors.INVALID_REQUEST, "DIALOUT_IN_PROGRESS: a dial-out is already being started"
)
INTERNAL = Refusal(500, errors.SERVER, "internal error")

#: Outcomes without a parameter, by SIP user name.
FIXED: dict[str, Outcome] = {
    o.name: o
    for o in (
        Outcome("answer", ANSWER),
        Outcome("noanswer", (Step(0.3, CONNECTED),)),
        Outcome("reject", (Step(0.3, CONNECTED), Step(0.8, ERROR, "Call rejected: busy"))),
        Outcome("hangup", (*ANSWER, Step(3.0, STOPPED))),
        Outcome("shuffle", ANSWER, shuffle=True),
        Outcome("early", (Step(0.0, CONNECTED), Step(0.0, ANSWERED)), early=True),
        Outcome("notallowed", refusal=NOT_ALLOWED),
        Outcome("inprogress", refusal=IN_PROGRESS),
        Outcome("servererror", refusal=INTERNAL),
        Outcome("drop", ANSWER, drop=True),
        Outcome("warning", (Step(0.3, CONNECTED), Step(0.5, WARNING), Step(1.0, ANSWERED))),
        Outcome("hang", hang=60.0),
        Outcome("lostend", (*ANSWER, Step(3.0, STOPPED)), lose_final=True),
    )
}

#: Phone numbers of the fixed outcomes.
PHONES: dict[str, str] = {
    "+15550100000": "answer",
    "+15550100001": "noanswer",
    "+15550100002": "reject",
    "+15550100003": "hangup",
    "+15550100070": "shuffle",
    "+15550100080": "early",
    "+15550100090": "notallowed",
    "+15550100091": "inprogress",
    "+15550100092": "servererror",
    "+15550100093": "drop",
    "+15550100094": "warning",
    "+15550100095": "hang",
    "+15550100096": "lostend",
}

#: Outcomes taking a digit 1..9: SIP user stem -> (phone prefix, outcome for the digit).
PARAMETRIZED: dict[str, tuple[str, Callable[[int], Outcome]]] = {
    "unavailable": (
        "+1555010004",
        lambda n: Outcome(f"unavailable{n}", ANSWER, refusal=UNAVAILABLE, refusals=n),
    ),
    "overloaded": (
        "+1555010005",
        lambda n: Outcome(f"overloaded{n}", ANSWER, refusal=OVERLOADED, refusals=n),
    ),
    "slow": ("+1555010006", lambda d: Outcome(f"slow{d}", ANSWER, response_delay=float(d))),
}

_SIP_USER = re.compile(r"sips?:([^@;?]*)")
_PARAMETRIZED_USER = re.compile(r"([a-z]+)([1-9])")


def sip_user(uri: str) -> str:
    match = _SIP_USER.match(uri)
    return match[1].lower() if match else ""


def outcome_for(destination: str) -> Outcome:
    """The outcome of a dial-out to ``destination`` (a ``phoneNumber`` or a ``sipUri``)."""
    if destination.startswith("sip"):
        user = sip_user(destination)
        if user in FIXED:
            return FIXED[user]
        match = _PARAMETRIZED_USER.fullmatch(user)
        if match and match[1] in PARAMETRIZED:
            return PARAMETRIZED[match[1]][1](int(match[2]))
        return FIXED["answer"]
    if destination in PHONES:
        return FIXED[PHONES[destination]]
    for prefix, make in PARAMETRIZED.values():
        digit = destination.removeprefix(prefix)
        if digit != destination and len(digit) == 1 and digit in "123456789":
            return make(int(digit))
    return FIXED["answer"]
