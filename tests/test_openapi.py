"""``GET /openapi.json`` describes the real routes, and the live server keeps its promises.

No workers run here: the calls schemathesis creates stay queued and never reach Daily (the
settings point ``DAILY_API_URL`` at a closed port anyway).
"""

from __future__ import annotations

import re
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from conftest import API_TOKEN
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from telephony import validation
from telephony.web import openapi

#: Flask adds ``/static`` to every app; the service serves no files there (it answers 404).
UNDOCUMENTED_ENDPOINTS = {"static"}


def test_every_route_is_documented_and_nothing_else(app: Any) -> None:
    routes = {
        (re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in UNDOCUMENTED_ENDPOINTS
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {
        (path, method) for path, item in openapi.document()["paths"].items() for method in item
    }
    assert routes == documented


def test_document_is_valid_openapi_and_served(web: str) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    response = requests.get(f"{web}/openapi.json", timeout=5)
    assert response.status_code == 200
    assert response.json() == openapi.document()
    validator.validate(response.json())


def test_every_v1_operation_needs_the_bearer_token() -> None:
    document = openapi.document()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, item in document["paths"].items():
        for operation in item.values():
            expected = [{"bearer": []}] if path.startswith("/v1/") else []
            assert operation["security"] == expected, path
            if path.startswith("/v1/"):
                assert "401" in operation["responses"]


#: Free-form JSON whose limits (depth, 64-bit integers) are stated in prose only.
FREE_FORM = ("metadata", "permissions")


def _comparable(value: Any, top: bool = True) -> Any:
    """A generated body as a client would send it: the document's ``integer`` admits ``1.0``
    (JSON Schema does), our validation does not, as documented; free-form fields aside."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_comparable(item, False) for item in value]
    if isinstance(value, dict):
        return {
            key: _comparable(item, False)
            for key, item in value.items()
            if not (top and key in FREE_FORM)
        }
    return value


@pytest.mark.parametrize(
    ("name", "check"),
    [
        ("DialOutPstn", validation.call_request),
        ("DialOutSip", validation.call_request),
        ("DialOutSipVideo", validation.call_request),
        ("DtmfRequest", validation.dtmf_request),
        ("TransferPstn", validation.transfer_request),
        ("TransferSip", validation.transfer_request),
        ("Refer", validation.transfer_request),
    ],
)
def test_request_schemas_are_no_looser_than_validation(name: str, check: Any) -> None:
    """Every body generated from a request schema passes the real validation."""
    probe = schemathesis.openapi.from_dict(_single_body_document(name))["/probe"]["POST"]

    @hypothesis.settings(
        max_examples=50,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=probe.as_strategy())
    def accepted(case: Any) -> None:
        check(_comparable(case.body))

    accepted()


def _single_body_document(name: str) -> dict[str, Any]:
    """A document with one operation whose body is the component ``name``."""
    body_schema = {"$ref": f"#/components/schemas/{name}"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "probe", "version": "1"},
        "paths": {
            "/probe": {
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": body_schema}},
                    },
                    "responses": {"200": {"description": "ok"}},
                }
            }
        },
        "components": {"schemas": openapi.document()["components"]["schemas"]},
    }


# --- schemathesis against the live server -------------------------------------------------------


@pytest.fixture
def api_schema(web: str) -> Any:
    return schemathesis.openapi.from_url(f"{web}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@hypothesis.settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
def test_live_server_keeps_the_documented_promises(case: Any) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        checks=[
            not_a_server_error,
            response_schema_conformance,
            status_code_conformance,
            content_type_conformance,
        ],
    )
