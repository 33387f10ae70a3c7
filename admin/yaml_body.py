"""Request bodies sent as YAML (``Content-Type: application/yaml``): a job definition may be
written in YAML as well as JSON (docs/api.md).

:class:`YamlBodyRoute` is the route class of such a route: a YAML body is read with PyYAML's
safe loader (one document; no aliases, so a small body cannot expand into a huge one;
timestamps stay text), checked to hold only what JSON can (string keys, finite numbers), and
handed to the route as the equivalent JSON. The route then validates and audits it exactly as
a JSON body. A body that is not YAML is a 400 naming its line and column; the refusal is
audited like any other. The body's size is capped before this, as for every body
(:class:`admin.middleware.AdminMiddleware`), and the audit log hashes the bytes as sent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

import yaml
from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import Message

from admin.errors import InvalidRequest
from admin.mutations import route_mutation

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml"})
"""The media types read as YAML (none of them can be sent cross-site without a preflight)."""

_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _Loader(yaml.SafeLoader):
    """The safe loader without aliases and without implicit timestamps."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not accepted", event.start_mark
            )
        return super().compose_node(parent, index)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def is_yaml(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() in YAML_TYPES


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def parse_yaml(raw: bytes) -> Any:
    """The one YAML document of ``raw`` as JSON-compatible values; :class:`InvalidRequest`
    (``yaml: line L, column C: ...``) when it is not one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"yaml: byte {exc.start} is not UTF-8") from None
    loader = _Loader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "not valid YAML"
        where = f"{_where(mark)}: " if mark is not None else ""
        raise InvalidRequest(f"yaml: {where}{problem}") from None
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"yaml: {_one_line(str(exc))}") from None
    finally:
        loader.dispose()
    _check_json(data, "")
    return data


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_json(value: Any, path: str) -> None:
    """Refuse what JSON cannot hold (naming where): non-string keys, infinite numbers,
    binary values, sets and the like."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidRequest(
                    f"{path or 'yaml'}: the key {key!r} is not a string (quote it)"
                )
            _check_json(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequest(f"{path or 'yaml'}: must be a finite number")
    elif value is not None and not isinstance(value, str | int | float | bool):
        kind = type(value).__name__
        raise InvalidRequest(f"{path or 'yaml'}: a YAML {kind} is not accepted here")


class YamlBodyRoute(APIRoute):
    """A route whose JSON body may also be sent as YAML (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            if is_yaml(request.headers.get("content-type")):
                request = await _as_json(request)
            return await handler(request)

        return handle


async def _as_json(request: Request) -> Request:
    """``request`` with its YAML body replaced by the same value as JSON (the decoded value
    is kept in ``request.state.body_object`` for the audit target and the text checks)."""
    try:
        data = parse_yaml(await request.body())
    except InvalidRequest:
        route_mutation(request)  # the refusal is audited (401 first without credentials)
        raise
    request.state.body_object = data
    body = json.dumps(data).encode()
    headers = [
        (name, value)
        for name, value in request.scope["headers"]
        if name not in (b"content-type", b"content-length")
    ]
    headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await request.receive()

    return Request({**request.scope, "headers": headers}, receive)
