"""Every Redis key and channel the service uses, under one prefix (``TELEPHONY_KEY_PREFIX``).

=====================================  ==========  =============================================
key                                    type        holds
=====================================  ==========  =============================================
``{p}:call:{id}``                      hash        the call (state, room, sessionId, ...)
``{p}:history:{id}``                   list        JSON history entries, oldest first
``{p}:calls``                          zset        call ids by creation time (ms): listings
``{p}:open``                           zset        calls not yet final, by creation (ms)
``{p}:periodic``                       string      the pool that runs the periodic work (TTL)
``{p}:webhook``                        hash        our Daily webhook (uuid, url) and its last check
``{p}:domain``                         string      the Daily domain id of the first webhook seen
``{p}:absent``                         hash        answered call id → when presence first lacked it
``{p}:session:{sessionId}``            string      call id of a Daily session
``{p}:pending:{sessionId}``            list        events held until the session's call is known
``{p}:seen:{eventId}``                 string      webhook envelope ids already applied (TTL)
``{p}:seq``                            string      the global, strictly increasing event number
``{p}:feed``                           stream      every recorded event, id ``{seq}-0``
``{p}:idem:{key}``                     hash        Idempotency-Key → body digest and call id
``{p}:limit:dialout``                  zset        reserved start slots (dial-out pacing)
``{p}:live``                           zset        calls holding a live-call slot
``{p}:legs:{room}``                    zset        calls holding one of the room's legs
``{p}:metrics``                        hash        event counters by outcome and state entered
``{p}:events`` (channel)               pub/sub     every recorded event
``{p}:calls:{id}`` (channel)           pub/sub     one call's events
=====================================  ==========  =============================================

The Lua script in ``apply.lua`` builds the same names from the prefix; keep them in step.
Finished calls, their history and session index expire after ``TELEPHONY_CALL_RETENTION``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str

    def call(self, call_id: str) -> str:
        return f"{self.prefix}:call:{call_id}"

    def history(self, call_id: str) -> str:
        return f"{self.prefix}:history:{call_id}"

    @property
    def calls(self) -> str:
        return f"{self.prefix}:calls"

    @property
    def open(self) -> str:
        """Calls (dial-outs and dial-ins) not yet final: what the sweep looks after."""
        return f"{self.prefix}:open"

    @property
    def periodic(self) -> str:
        return f"{self.prefix}:periodic"

    @property
    def domain(self) -> str:
        """Feed and history entries leave out a ``domain_id`` equal to it (apply.lua)."""
        return f"{self.prefix}:domain"

    @property
    def webhook(self) -> str:
        return f"{self.prefix}:webhook"

    @property
    def absent(self) -> str:
        """Answered calls that room presence lacked at a check, and since when (UNIX s)."""
        return f"{self.prefix}:absent"

    def session(self, session_id: str) -> str:
        return f"{self.prefix}:session:{session_id}"

    def pending(self, session_id: str) -> str:
        return f"{self.prefix}:pending:{session_id}"

    def seen(self, event_id: str) -> str:
        return f"{self.prefix}:seen:{event_id}"

    @property
    def seq(self) -> str:
        return f"{self.prefix}:seq"

    @property
    def feed(self) -> str:
        return f"{self.prefix}:feed"

    def idempotency(self, key: str) -> str:
        return f"{self.prefix}:idem:{key}"

    @property
    def dialout_limit(self) -> str:
        return f"{self.prefix}:limit:dialout"

    @property
    def live(self) -> str:
        return f"{self.prefix}:live"

    def room_legs(self, room: str) -> str:
        """The room's legs in use (room names are validated: no ``:`` or spaces)."""
        return f"{self.prefix}:legs:{room}"

    @property
    def metrics(self) -> str:
        return f"{self.prefix}:metrics"

    @property
    def events_channel(self) -> str:
        return f"{self.prefix}:events"

    def call_channel(self, call_id: str) -> str:
        return f"{self.prefix}:calls:{call_id}"
