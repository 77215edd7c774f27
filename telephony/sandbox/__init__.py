"""A faithful, fast, deterministic stand-in for Daily's dial-out REST API and its webhooks.

Outcomes are chosen by the destination (:mod:`telephony.sandbox.outcomes`); run it with
``telephony sandbox`` or :class:`telephony.sandbox.server.Sandbox`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Sandbox"]

if TYPE_CHECKING:
    from telephony.sandbox.server import Sandbox


def __getattr__(name: str) -> Any:
    # Lazy, so that importing ``telephony.sandbox.outcomes`` does not pull in Flask.
    if name == "Sandbox":
        from telephony.sandbox.server import Sandbox

        return Sandbox
    raise AttributeError(name)
