"""telephony: place and control outbound calls through Daily's dial-out API, and know the
state of every call at once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["TelephonyClient", "__version__"]

if TYPE_CHECKING:
    from telephony.client import TelephonyClient


def __getattr__(name: str) -> Any:
    # Lazy, so that ``import telephony.defaults`` stays cheap for workers and the sandbox.
    if name == "TelephonyClient":
        from telephony.client import TelephonyClient

        return TelephonyClient
    raise AttributeError(name)
