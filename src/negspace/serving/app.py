"""The HTTP routes of `negspace serve`, and the answers to bad requests.

Every answer is JSON (the Prometheus text of /metrics aside); every error names what was wrong
in one JSON object `{"error": ...}` and never carries a traceback. The ranking is the Python
Recommender's (`Recommender.rank_vectors`), so answers equal `negspace recommend --json` and
`Recommender.recommend` / `recommend_new`.
"""

# No `from __future__ import annotations`: FastAPI reads the request models from the route
# signatures at runtime, and they are local to create_app.
import asyncio
import json
import logging
import signal
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError
from negspace.serving.auth import TokenCheck
from negspace.serving.holder import LoadedModel, ModelHolder, ReloadBusy
from negspace.serving.metrics import ServerMetrics
from negspace.serving.schemas import Limits, request_models

log = logging.getLogger("negspace.serve")
MAX_NAMED = 100  # unknown ids named in one 404 answer


@dataclass(frozen=True)
class ServeSettings:
    """Args:
        limits: per-request bounds.
        token: the bearer token every route but /health needs; None: no authentication.
        workers: worker processes (with more than one, POST /reload is refused: it would
            reach one worker; SIGHUP to the main process reaches them all).
        sighup: reload from the source run directory on SIGHUP (a real server, not tests).
    """

    limits: Limits = field(default_factory=Limits)
    token: str | None = None
    workers: int = 1
    sighup: bool = False


def answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON response, serialised directly (FastAPI's encoder walks every list element)."""
    text = json.dumps(body, separators=(",", ":"), allow_nan=False)
    return Response(text.encode(), status_code=status, media_type="application/json",
                    headers=headers)


def create_app(holder: ModelHolder, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI application serving `holder`'s model.

    Args:
        holder: the model holder (reloads swap its model).
        settings: limits, token, workers, SIGHUP handling.

    Returns:
        The app; `app.state.metrics` holds its Prometheus metrics.
    """
    settings = settings or ServeSettings()
    metrics = ServerMetrics()
    RecommendRequest, NewUserRequest, SimilarRequest, ReloadRequest = request_models(
        settings.limits)
    tasks: set[asyncio.Task] = set()

    async def reload_on_signal() -> None:
        try:
            new = await asyncio.to_thread(holder.reload)
        except NegspaceError as e:
            metrics.reloads.labels("refused").inc()
            log.error("SIGHUP reload refused, still serving version %d: %s",
                      holder.current.version, e)
            return
        metrics.reloads.labels("ok").inc()
        log.info("SIGHUP reload: serving version %d from %s", new.version, new.path)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.sighup:
            loop = asyncio.get_running_loop()

            def on_hup() -> None:
                task = loop.create_task(reload_on_signal())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            loop.add_signal_handler(signal.SIGHUP, on_hup)
        yield

    app = FastAPI(title="negspace", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.metrics = metrics
    app.state.holder = holder

    # -- errors ----------------------------------------------------------------------------------

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return answer(400, {"error": "malformed JSON body"})
        detail = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))[:200]}
                  for e in errors[:20]]
        return answer(422, {"error": "invalid request", "detail": detail})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return answer(exc.status_code, {"error": str(exc.detail)}, exc.headers)

    @app.exception_handler(NegspaceError)
    async def user_error(request: Request, exc: NegspaceError) -> Response:
        return answer(400, {"error": " ".join(str(exc).split())})

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s", request.url.path)
        return answer(500, {"error": "internal server error"})

    # -- routes ----------------------------------------------------------------------------------

    @app.get("/health")
    async def health() -> Response:
        return answer(200, {"status": "ok", "model_version": holder.current.version})

    @app.get("/model")
    async def model_info() -> Response:
        return answer(200, holder.current.info)

    @app.post("/recommend")
    async def recommend(body: RecommendRequest) -> Response:  # type: ignore[valid-type]
        m = holder.current  # this request's model, whatever a reload does meanwhile
        rows = m.rec.train.find("user", body.users)
        missing = _unknown(m, body.users, rows, "user") or _unknown_items(m, body)
        if missing is not None:
            return missing
        vectors = m.rec.user_vectors[torch.from_numpy(rows)]
        return _ranked(m, body, vectors, rows if body.exclude_seen else None, body.users)

    @app.post("/recommend/new")
    async def recommend_new(body: NewUserRequest) -> Response:  # type: ignore[valid-type]
        m = holder.current
        if body.features is not None and not m.two_tower:
            return answer(422, {"error": "features are read by two-tower models only"})
        if m.two_tower and body.features:
            bad = sorted(set(body.features) - set(m.feature_names))
            if bad:
                return answer(422, {"error": f"unknown feature(s) {', '.join(bad[:20])}; this "
                                    f"model reads {', '.join(m.feature_names) or 'none'}"})
        if not m.two_tower and not body.items:
            return answer(422, {"error": "items: a fold-in needs at least one item"})
        idx = m.rec.train.find("item", body.items)
        missing = _unknown(m, body.items, idx, "item") or _unknown_items(m, body)
        if missing is not None:
            return missing
        history = idx.tolist()
        # the fold-in runs 150 optimiser steps: off the event loop, so other requests go on
        vectors = await run_in_threadpool(
            m.rec.new_user_vectors, [history], [body.features] if m.two_tower else None)
        seen = Interactions.from_indices(np.zeros(len(history), np.int64), idx,
                                         np.array([0]), m.rec.train.item_ids)
        return _ranked(m, body, vectors, np.zeros(1, np.int64) if body.exclude_seen else None,
                       [None], seen=seen, single=True)

    @app.post("/similar")
    async def similar(body: SimilarRequest) -> Response:  # type: ignore[valid-type]
        m = holder.current
        missing = _unknown(m, [body.item], m.rec.train.find("item", [body.item]), "item")
        if missing is not None:
            return missing
        frame = m.rec.similar_items(body.item, body.k)
        return answer(200, {"model_version": m.version, "item": body.item,
                            "items": frame["similar"].tolist(),
                            "scores": frame["score"].astype(float).tolist()})

    @app.get("/metrics")
    async def prometheus() -> Response:
        m = holder.current
        metrics.model(m.version, m.loaded_at, m.rec.train.n_users, m.rec.train.n_items)
        return Response(metrics.text(), media_type=metrics.content_type)

    @app.post("/reload")
    async def reload(body: ReloadRequest | None = None) -> Response:  # type: ignore[valid-type]
        if settings.token is None:
            return answer(403, {"error": "reload over HTTP needs the server started with "
                                         "--token-file; send SIGHUP to the server instead"})
        if settings.workers > 1:
            return answer(409, {"error": "with several workers, send SIGHUP to the main process "
                                         "(every worker reloads)"})
        try:
            new = await asyncio.to_thread(holder.reload, body.run_dir if body else None)
        except ReloadBusy as e:
            return answer(409, {"error": str(e), "model_version": holder.current.version})
        except NegspaceError as e:
            metrics.reloads.labels("refused").inc()
            return answer(422, {"error": f"reload refused: {' '.join(str(e).split())}",
                                "model_version": holder.current.version})
        metrics.reloads.labels("ok").inc()
        return answer(200, {"model_version": new.version, "run_dir": str(new.path)})

    return Guard(app, metrics, settings)


def _unknown(m: LoadedModel, ids: list, rows: np.ndarray, what: str) -> Response | None:
    """404 naming the unknown ids (at most MAX_NAMED), or None when all are known."""
    bad = [x for x, r in zip(ids, rows.tolist()) if r < 0]
    if not bad:
        return None
    return answer(404, {"error": f"unknown {what} id(s)", f"{what}s": bad[:MAX_NAMED],
                        "count": len(bad)})


def _unknown_items(m: LoadedModel, body: Any) -> Response | None:
    for name in ("exclude", "candidates"):
        given = getattr(body, name)
        if given:
            missing = _unknown(m, given, m.rec.train.find("item", given), "item")
            if missing is not None:
                return missing
    return None


def _ranked(m: LoadedModel, body: Any, vectors: torch.Tensor, seen_rows: np.ndarray | None,
            keys: list, seen: Interactions | None = None, single: bool = False) -> Response:
    """Ranks with the Recommender and answers {"model_version", "exact", "results"|...}."""
    # the index answers plain top-k; candidate lists and exclusions rank exactly
    exact = not m.use_index or body.candidates is not None or body.exclude is not None
    top, scores = m.rec.rank_vectors(vectors, seen_rows, body.k, items=body.candidates,
                                     exclude=body.exclude, use_index=not exact, seen=seen)
    item_ids = m.rec.train.item_ids
    results = []
    for key, t, s in zip(keys, top, scores):
        valid = t >= 0
        results.append({"user": key, "items": item_ids[t[valid]].tolist(),
                        "scores": s[valid].astype(np.float64).tolist()})
    out: dict[str, Any] = {"model_version": m.version, "exact": exact}
    if single:
        out.update(items=results[0]["items"], scores=results[0]["scores"])
    else:
        out["results"] = results
    return answer(200, out)


class Guard:
    """Outermost ASGI layer: the bearer token, the body size limit, the Prometheus counts, and a
    JSON 500 for anything that escapes (never a traceback in a response)."""

    def __init__(self, app: FastAPI, metrics: ServerMetrics, settings: ServeSettings) -> None:
        self.app, self.metrics, self.settings = app, metrics, settings
        self.check = TokenCheck(settings.token) if settings.token else None
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
            self.metrics.observe(path, status[0] or 500, time.perf_counter() - start)

    async def _handle(self, scope: dict, receive: Any, send: Any, path: str) -> None:
        headers = dict(scope.get("headers") or [])
        if self.check is not None and path != "/health" \
                and not self.check.allows(headers.get(b"authorization")):
            await _send(send, 401, {"error": "missing or wrong bearer token"},
                        [(b"www-authenticate", b"Bearer")])
            return
        if scope.get("method") in ("POST", "PUT", "PATCH"):
            limit = self.settings.limits.max_body_bytes
            declared = headers.get(b"content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > limit):
                code = 413 if declared.isdigit() else 400
                await _send(send, code, {"error": f"request body over {limit} bytes"
                                         if code == 413 else "bad Content-Length"})
                return
            body, more, disconnected = b"", True, False
            while more:  # read it all here, so a chunked body is bounded too
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected = True
                    break
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > limit:
                    await _send(send, 413, {"error": f"request body over {limit} bytes"})
                    return
            if disconnected:
                return
            receive = _replay(body)
            # every body is JSON here: read it as such whatever Content-Type says (curl -d
            # sends form encoding, which FastAPI would not parse)
            scope = {**scope, "headers": [(k, v) for k, v in scope.get("headers") or []
                                          if k != b"content-type"]
                     + [(b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


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
