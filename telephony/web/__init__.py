"""The Flask app factory: HTTP API, webhook receiver and health routes, one module each.

The web layer only translates HTTP to domain calls and back; business rules live in the
domain modules (``telephony.inbound``, ``telephony.store``, ``telephony.calls``).
"""

from __future__ import annotations

import logging

from flask import Flask

from telephony import defaults
from telephony.config import Settings
from telephony.web import api, errors, health, webhooks
from telephony.web.bodies import BoundedBodies
from telephony.web.context import Services


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask("telephony", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = defaults.API_MAX_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["telephony"] = Services.build(settings)
    errors.register(app)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    app.wsgi_app = BoundedBodies(app.wsgi_app)  # type: ignore[method-assign]
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return app
