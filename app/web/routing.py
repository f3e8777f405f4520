"""Each route declared once, at its handler: one decorator adds the Flask rule to the blueprint and the
operation to the OpenAPI document (app.web.openapi), and the handler reads its body and query string
through the schemas declared there."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, request
from werkzeug.routing import BaseConverter, Map

from app.core import ids
from app.web.openapi import JSON, ROUTES, Route
from schemas import http

View = TypeVar("View", bound=Callable[..., Any])

_DECLARED: dict[tuple[str, str], Route] = {}
"""(endpoint, method) -> its declaration, for the handler's body and query schemas."""


class IdConverter(BaseConverter):
    """A path segment that is an id of one kind (``<id("batch_id"):batch_id>``): anything else matches no
    route, so it is a 404 before it can become part of a Redis key."""

    def __init__(self, map: Map, name: str):
        super().__init__(map)
        self.regex = ids.PATTERNS[name]


def _with_id_patterns(rule: str) -> str:
    """The rule with each variable named like an id (``<batch_id>``) held to that id's pattern."""
    return re.sub(
        r"<(\w+)>",
        lambda m: f'<id("{m[1]}"):{m[1]}>' if m[1] in ids.PATTERNS else m[0],
        rule,
    )


class Routes:
    """A blueprint's routes; ``tag`` and ``auth`` are what its operations have unless they say otherwise."""

    def __init__(self, bp: Blueprint, tag: str, auth: bool = True):
        self.bp, self.tag, self.auth = bp, tag, auth
        # before the blueprint's first rule: an app learns the converter when the blueprint is registered
        bp.record_once(lambda state: state.app.url_map.converters.setdefault("id", IdConverter))

    def __call__(
        self,
        method: str,
        rule: str,
        summary: str,
        responses: dict[int, str | None],
        *,
        body: str | None = None,
        body_type: str = JSON,
        query: str | None = None,
        auth: bool | None = None,
        description: str = "",
        response_type: dict[int, str] | None = None,
    ) -> Callable[[View], View]:
        # the rule's variables (<path:record_key>) in OpenAPI's form ({record_key})
        path = (self.bp.url_prefix or "") + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)
        route = Route(
            method,
            path,
            summary,
            self.tag,
            responses,
            body=body,
            body_type=body_type,
            query=query,
            auth=self.auth if auth is None else auth,
            description=description,
            response_type=response_type or {},
        )
        # recorded now, not when applied: stacked decorators apply bottom up, the document lists them as written
        ROUTES.append(route)

        def register(view: View) -> View:
            self.bp.add_url_rule(_with_id_patterns(rule), view_func=view, methods=[method])
            _DECLARED[(f"{self.bp.name}.{view.__name__}", method)] = route
            return view

        return register


def _declared() -> Route:
    """The declaration of the route serving this request (HEAD is served as GET)."""
    method = "GET" if request.method == "HEAD" else request.method
    return _DECLARED[(request.endpoint or "", method)]


def body_schema() -> str:
    """The route's body schema, for the handlers that parse the body themselves (a form, a CSV)."""
    schema = _declared().body
    assert schema, f"{request.endpoint} declares no body"
    return schema


def json_body() -> dict[str, Any]:
    """The request's body as a JSON object, checked against the route's body schema."""
    return http.json_body(body_schema())


def query_params() -> dict[str, Any]:
    """The request's query string, checked against the route's query schema."""
    schema = _declared().query
    assert schema, f"{request.endpoint} declares no query"
    return http.query_params(schema)
