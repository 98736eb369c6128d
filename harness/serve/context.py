"""What every route of the dashboard shares: the open store, the token check, the live lab
source, and the responses that keep secrets out of every page and JSON document.

Every response body passes :meth:`Context.clean`: store URL passwords, secret options and
the lab's environment secrets are masked (:mod:`quantlab.harness.redact`), and so is the
token the server was started with, wherever it might sit in stored text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from quantlab.harness.redact import MASK, redact_data, redact_text
from quantlab.harness.serve.auth import TokenCheck
from quantlab.harness.store import Store

LiveSource = Callable[[], dict[str, Any]]
"""Returns the lab as it is now (``lab status --json``'s shape, each device with its live
``health``); raises when the lab cannot be reached."""


@dataclass
class Context:
    """The server's shared state (one per app)."""

    store: Store
    token: TokenCheck | None = None
    live: LiveSource | None = None
    refresh_s: float = 5.0
    secrets: tuple[str, ...] = field(default=())

    @property
    def location(self) -> str:
        """The store's location, fit to print."""
        return self.clean(self.store.location)

    def clean(self, text: str) -> str:
        """``text`` with every known kind of secret masked."""
        text = redact_text(text)
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def clean_data(self, data: Any) -> Any:
        """A JSON-ready value with :meth:`clean` applied to every string in it."""
        data = redact_data(data)
        if not self.secrets:
            return data
        if isinstance(data, str):
            return self.clean(data)
        if isinstance(data, dict):
            return {k: self.clean_data(v) for k, v in data.items()}
        if isinstance(data, list):
            return [self.clean_data(v) for v in data]
        return data


def get_context(request: Request) -> Context:
    """The app's :class:`Context` (a FastAPI dependency)."""
    ctx: Context = request.app.state.ctx
    return ctx


def _strict(value: Any) -> Any:
    """JSON data with NaN/±inf as the strings ``"nan"``/``"inf"``/``"-inf"`` (as ``--json``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def json_response(ctx: Context, data: Any, status: int = 200) -> Response:
    """A JSON document with secrets masked (strict JSON: no bare NaN)."""
    body = json.dumps(ctx.clean_data(_strict(json.loads(json.dumps(data, default=str)))),
                      allow_nan=False)
    return Response(body, status_code=status, media_type="application/json")


def html_response(ctx: Context, text: str, status: int = 200) -> HTMLResponse:
    """An HTML page with secrets masked."""
    return HTMLResponse(ctx.clean(text), status_code=status)


def text_response(ctx: Context, text: str, media_type: str, status: int = 200) -> Response:
    """A text document (JUnit XML, Markdown) with secrets masked."""
    return Response(ctx.clean(text), status_code=status, media_type=media_type)
