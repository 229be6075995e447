"""The outermost ASGI layer of `negspace serve`: what is checked before a route runs.

In order: the Host header (DNS rebinding), the bearer tokens (the admin one for POST /reload),
the number of requests in flight (503 + Retry-After when full), the body's Content-Type and size;
then the Prometheus counts, and a JSON 500 for anything that escapes (never a traceback).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from negspace.serving.auth import TokenCheck

log = logging.getLogger("negspace.serve")
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
UNLIMITED = ("/health", "/metrics")  # answered even when the server is full: probes and scrapes


def host_name(value: bytes) -> str:
    """The name in a Host header, without its port (`[::1]:80` -> `::1`)."""
    text = value.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1:text.find("]")] if "]" in text else text
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


class Guard:
    """Wraps the FastAPI app (`app.state` stays reachable as `guard.state`).

    Args:
        app: the FastAPI app.
        metrics: its ServerMetrics.
        settings: the ServeSettings (tokens, limits, allowed hosts, requests in flight).
    """

    def __init__(self, app: Any, metrics: Any, settings: Any) -> None:
        self.app, self.metrics, self.settings = app, metrics, settings
        self.check = TokenCheck(settings.token) if settings.token else None
        self.admin = TokenCheck(settings.admin_token) if settings.admin_token else None
        hosts = settings.allowed_hosts
        # no token: a browser page could reach a loopback server, so only loopback names
        self.hosts = (frozenset(h.lower() for h in hosts) if hosts is not None
                      else LOOPBACK_NAMES if settings.token is None else None)
        self.inflight = 0
        self.state = app.state  # tests and the server reach the metrics and holder here

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [0]

        async def tracked(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        path = scope.get("path", "")
        try:
            await self._handle(scope, receive, tracked, path)
        except Exception:
            log.exception("unhandled error on %s", path)
            if status[0] == 0:
                await _send(tracked, 500, {"error": "internal server error"})
        finally:
            code = status[0] or 499  # 499: the client left before an answer
            self.metrics.observe(path, code, time.perf_counter() - start)
            if path == "/reload" and scope.get("method") == "POST":
                self.metrics.reloads.labels("ok" if code == 200 else "refused").inc()

    async def _handle(self, scope: dict, receive: Any, send: Any, path: str) -> None:
        headers = dict(scope.get("headers") or [])
        if self.hosts is not None and "*" not in self.hosts and b"host" in headers \
                and host_name(headers[b"host"]) not in self.hosts:
            await _send(send, 400, {"error": "Host header not allowed (see --allowed-hosts)"})
            return
        check = self.admin if path == "/reload" and self.admin is not None else self.check
        if check is not None and path != "/health" \
                and not check.allows(headers.get(b"authorization")):
            await _send(send, 401, {"error": "missing or wrong bearer token"},
                        [(b"www-authenticate", b"Bearer")])
            return
        if scope.get("method") in ("POST", "PUT", "PATCH"):
            # read first: a slow body is bounded by --read-timeout, not by a request slot
            body = await self._body(receive, send, headers)
            if body is None:
                return
            receive = _replay(body)
            # with a token, a body is JSON whatever Content-Type says (curl -d sends form
            # encoding, which FastAPI would not parse)
            scope = {**scope, "headers": [(k, v) for k, v in scope.get("headers") or []
                                          if k != b"content-type"]
                     + [(b"content-type", b"application/json")]}
        if path in UNLIMITED:
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.settings.max_inflight:
            await _send(send, 503, {"error": "server busy: too many requests in flight"},
                        [(b"retry-after", b"1")])
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1

    async def _body(self, receive: Any, send: Any, headers: dict) -> bytes | None:
        """The whole request body, or None once an error is answered (or the client left)."""
        limit = self.settings.limits.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            code = 413 if declared.isdigit() else 400
            await _send(send, code, {"error": f"request body over {limit} bytes"
                                     if code == 413 else "bad Content-Length"})
            return None
        body, more = b"", True
        while more:  # read it all here, so a chunked body is bounded too
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                await _send(send, 413, {"error": f"request body over {limit} bytes"})
                return None
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if self.check is None and body and ctype != b"application/json":
            # no token: a browser page may POST text/plain here without a CORS preflight
            await _send(send, 415, {"error": "Content-Type must be application/json"})
            return None
        return body


def _replay(body: bytes) -> Any:
    sent = [False]

    async def receive() -> dict:
        if not sent[0]:
            sent[0] = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # nothing more: wait like a quiet client until cancelled
        return {"type": "http.disconnect"}
    return receive


async def _send(send: Any, status: int, body: dict,
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": data})
