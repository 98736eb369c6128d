"""The dashboard as an ASGI application (FastAPI): pages, JSON endpoints, the login form,
security headers and the error pages.

:func:`create_app` takes an open store and how to guard it; ``quantlab serve`` runs the app
with uvicorn, tests with Starlette's TestClient or a real uvicorn server. Every route
reads; the only POST is the login form, which writes a cookie, never the store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from html import escape
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response

from quantlab.harness.errors import StoreError, UserError
from quantlab.harness.serve import api, pages
from quantlab.harness.serve.auth import (
    COOKIE,
    LOOPBACK_NAMES,
    PUBLIC_PATHS,
    TokenCheck,
    safe_next,
)
from quantlab.harness.serve.context import Context, LiveSource, html_response, json_response
from quantlab.harness.serve.data import NotFound
from quantlab.harness.serve.markup import SCRIPT, STYLE, a, e, page, section, table
from quantlab.harness.store import Store

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
"""On every response: no script but the dashboard's own, no framing, nothing cached."""

LOGIN_BODY_LIMIT = 8192


def create_app(store: Store, *, token: str | None = None, live: LiveSource | None = None,
               refresh_s: float = 5.0, loopback_only: bool = True) -> FastAPI:
    """The dashboard over ``store``: requests must carry ``token`` when one is given (see
    :mod:`quantlab.harness.serve.auth`); with ``loopback_only`` and no token, only requests
    naming a loopback host are answered. ``live`` gives the lab's state for the lab page."""
    ctx = Context(store=store, token=TokenCheck(token) if token else None, live=live,
                  refresh_s=refresh_s, secrets=(token,) if token else ())
    app = FastAPI(title="quantlab serve", version="1", docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json",
                  description="Read-only dashboard and JSON endpoints over a quantlab "
                  "results store (docs/serve.md).")
    app.state.ctx = ctx
    app.include_router(api.router)
    app.include_router(pages.router)
    _static(app)
    _login(app, ctx)
    _api_index(app, ctx)
    _errors(app, ctx)
    guard = _guard(ctx, loopback_only and ctx.token is None)
    app.middleware("http")(guard)
    return app


def _static(app: FastAPI) -> None:
    @app.get("/static/dashboard.css", include_in_schema=False)
    def css() -> Response:
        return Response(STYLE, media_type="text/css")

    @app.get("/static/dashboard.js", include_in_schema=False)
    def js() -> Response:
        return Response(SCRIPT, media_type="text/javascript")

    @app.get("/favicon.ico", include_in_schema=False)
    def icon() -> Response:  # browsers ask for it beside a raw text file: none, not a 404
        return Response(status_code=204)


def _login_page(ctx: Context, next_path: str, wrong: bool) -> str:
    note = "<p class=bad>That is not the lab token.</p>" if wrong else ""
    form = (f'{note}<form class="filters" method="post" action="/login">'
            f'<input type="hidden" name="next" value="{e(next_path)}"><label>lab token '
            f'(the contents of the token file)<input type="password" name="token" '
            f'autocomplete="current-password" autofocus></label>'
            f'<button type="submit">Log in</button></form>')
    return page("Log in", section("login", "This dashboard needs the lab token", form),
                active="", location=ctx.location, auth=True)


def _login(app: FastAPI, ctx: Context) -> None:
    @app.get("/login", include_in_schema=False)
    def login_form(next: str = "/") -> Response:
        return html_response(ctx, _login_page(ctx, safe_next(next), False))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        body = await request.body()
        if len(body) > LOGIN_BODY_LIMIT:
            return Response("a login form is a few hundred bytes", status_code=413)
        form = parse_qs(body.decode("utf-8", "replace"))
        typed = (form.get("token") or [""])[0]
        target = safe_next((form.get("next") or ["/"])[0])
        if ctx.token is None:
            return RedirectResponse(target, status_code=303)
        if not ctx.token.matches(typed):
            return html_response(ctx, _login_page(ctx, target, True), status=401)
        done = RedirectResponse(target, status_code=303)
        done.set_cookie(COOKIE, ctx.token.cookie_value, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
        return done

    @app.get("/logout", include_in_schema=False)
    def logout() -> Response:
        done = RedirectResponse("/login", status_code=303)
        done.delete_cookie(COOKIE)
        return done


def _api_index(app: FastAPI, ctx: Context) -> None:
    @app.get("/api", include_in_schema=False)
    def api_index() -> Response:
        rows = []
        for path, methods in app.openapi()["paths"].items():
            for method, op in methods.items():
                params = ", ".join(p["name"] for p in op.get("parameters", []))
                rows.append([e(method.upper()), a(path, path) if "{" not in path else e(path),
                             e(op.get("summary")), e(params),
                             e(" ".join(op.get("description", "").split()))])
        body = section("api", "JSON endpoints", (
            "<p>Every endpoint answers GET with JSON and writes nothing. The schema: "
            f"{a('/api/openapi.json', '/api/openapi.json')} (OpenAPI); with a token, send "
            "<code>Authorization: Bearer TOKEN</code>. Pages beside them: <code>/runs/RUN/"
            "verdicts.xml</code> and <code>.md</code>, <code>/compare/verdicts.xml?a=&amp;b="
            "</code> and <code>.md</code>, raw files at <code>/runs/RUN/jobs/JOB/raw/NAME"
            "</code>.</p>" + table(["method", "path", "what", "parameters", "details"], rows,
                                   id_="api-table")))
        return html_response(ctx, page("API", body, active="api", location=ctx.location,
                                       auth=ctx.token is not None))


def _errors(app: FastAPI, ctx: Context) -> None:
    def answer(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api"):
            return json_response(ctx, {"error": message, "status": status}, status)
        body = section("error", f"{status}", f"<p class=bad>{escape(message)}</p>"
                       f"<p>{a('/runs', 'back to the runs')}</p>")
        return html_response(ctx, page("Not found" if status == 404 else "Error", body,
                                       active="", location=ctx.location,
                                       auth=ctx.token is not None), status)

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, UserError)
        status = 404 if isinstance(exc, NotFound) else 503 if isinstance(exc, StoreError) \
            else 400
        return answer(request, status, exc.one_line())

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        wrong = "; ".join(f"{'.'.join(str(p) for p in err.get('loc', ())[1:])}: {err['msg']}"
                          for err in exc.errors())
        return answer(request, 400, f"bad request ({wrong})")


def hostname(header: str) -> str:
    """The host of a ``Host`` header, without its port or IPv6 brackets."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


Guard = Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]


def _guard(ctx: Context, check_host: bool) -> Guard:
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                    ) -> Response:
        host = hostname(request.headers.get("host") or "")
        if check_host and host not in LOOPBACK_NAMES:
            answer: Response = Response(f"host {host!r}: this dashboard answers on loopback "
                                        "only (127.0.0.1, localhost)", status_code=400,
                                        media_type="text/plain")
        elif ctx.token is not None and not request.url.path.startswith(PUBLIC_PATHS) and \
                not ctx.token.accepts(request.headers.get("authorization"),
                                      request.cookies.get(COOKIE)):
            if request.url.path.startswith("/api"):
                answer = json_response(ctx, {"error": "this dashboard needs the lab token: "
                                             "send Authorization: Bearer TOKEN",
                                             "status": 401}, 401)
                answer.headers["WWW-Authenticate"] = "Bearer"
            else:
                wanted = request.url.path + (f"?{request.url.query}" if request.url.query
                                             else "")
                answer = RedirectResponse(f"/login?next={quote(wanted)}", status_code=303)
        else:
            answer = await call_next(request)
        for key, value in HEADERS.items():
            answer.headers.setdefault(key, value)
        return answer

    return guard
