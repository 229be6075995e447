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
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import anyio
import anyio.to_thread
import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError
from negspace.serving.guard import Guard
from negspace.serving.holder import LoadedModel, ModelHolder, ReloadBusy, ReloadOff, UnknownRun
from negspace.serving import openapi as docs
from negspace.serving.metrics import ServerMetrics
from negspace.serving.schemas import Limits, request_models

log = logging.getLogger("negspace.serve")
MAX_NAMED = 100  # unknown ids named in one 404 answer
RANK_THREADS = 4  # requests ranking at once per worker (the others wait for a thread)


@dataclass(frozen=True)
class ServeSettings:
    """Args:
        limits: per-request bounds.
        token: the bearer token every route but /health needs; None: no authentication (then
            only loopback Host names and JSON bodies are accepted).
        workers: worker processes (with more than one, POST /reload is refused: it would
            reach one worker; SIGHUP to the main process reaches them all).
        sighup: reload from the source run directory on SIGHUP (a real server, not tests).
        admin_token: the bearer token of POST /reload; None: reloads over HTTP are off.
        allowed_hosts: Host names accepted ("*": any); None: loopback names without a token,
            any with one.
        max_inflight: requests in flight beyond which others get 503 + Retry-After (/health
            and /metrics are always answered).
    """

    limits: Limits = field(default_factory=Limits)
    token: str | None = None
    workers: int = 1
    sighup: bool = False
    admin_token: str | None = None
    allowed_hosts: tuple[str, ...] | None = None
    max_inflight: int = 64


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
        except NegspaceError as e:  # (ReloadBusy included: a POST /reload is loading)
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
    # Ranking runs in worker threads (torch and numpy release the GIL there), never on the event
    # loop: /health answers at once while large requests rank.
    limiter: list[anyio.CapacityLimiter] = []

    async def off_loop(work: Any) -> Response:
        if not limiter:
            limiter.append(anyio.CapacityLimiter(RANK_THREADS))
        return await anyio.to_thread.run_sync(work, limiter=limiter[0])

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> Response:
        schema = get_openapi(title="negspace", version="1", routes=app.routes,
                             description="negspace serve: recommendations from a trained run")
        return answer(200, docs.finish(schema, holder.current, settings.token is not None,
                                       settings.admin_token is not None))

    @app.get("/health", **docs.HEALTH)
    async def health() -> Response:
        return answer(200, {"status": "ok", "model_version": holder.current.version})

    @app.get("/model", **docs.MODEL)
    async def model_info() -> Response:
        return answer(200, holder.current.info)

    @app.post("/recommend", **docs.RECOMMEND)
    async def recommend(body: RecommendRequest) -> Response:  # type: ignore[valid-type]
        m = holder.current  # this request's model, whatever a reload does meanwhile

        def work() -> Response:
            rows = m.rec.train.find("user", body.users)
            missing = _unknown(m, body.users, rows, "user") or _unknown_items(m, body)
            if missing is not None:
                return missing
            vectors = m.rec.user_vectors[torch.from_numpy(rows)]
            return _ranked(m, body, vectors, rows if body.exclude_seen else None, body.users,
                           history_rows=rows)
        return await off_loop(work)

    @app.post("/recommend/new", **docs.NEW_USER)
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

        def work() -> Response:  # the fold-in runs 150 optimiser steps
            idx = m.rec.train.find("item", body.items)
            missing = _unknown(m, body.items, idx, "item") or _unknown_items(m, body)
            if missing is not None:
                return missing
            history = idx.tolist()
            vectors = m.rec.new_user_vectors([history],
                                             [body.features] if m.two_tower else None)
            seen = Interactions.from_indices(np.zeros(len(history), np.int64), idx,
                                             np.array([0]), m.rec.train.item_ids)
            return _ranked(m, body, vectors,
                           np.zeros(1, np.int64) if body.exclude_seen else None, [None],
                           seen=seen, single=True, history_rows=np.zeros(1, np.int64))
        return await off_loop(work)

    @app.post("/similar", **docs.SIMILAR)
    async def similar(body: SimilarRequest) -> Response:  # type: ignore[valid-type]
        m = holder.current

        def work() -> Response:
            missing = _unknown(m, [body.item], m.rec.train.find("item", [body.item]), "item")
            if missing is not None:
                return missing
            frame = m.rec.similar_items(body.item, body.k)
            return answer(200, {"model_version": m.version, "item": body.item,
                                "items": frame["similar"].tolist(),
                                "scores": frame["score"].astype(float).tolist()})
        return await off_loop(work)

    @app.get("/metrics", **docs.METRICS)
    async def prometheus() -> Response:
        m = holder.current
        metrics.model(m.version, m.loaded_at, m.rec.train.n_users, m.rec.train.n_items)
        return Response(metrics.text(), media_type=metrics.content_type)

    @app.post("/reload", **docs.RELOAD)
    async def reload(body: ReloadRequest | None = None) -> Response:  # type: ignore[valid-type]
        # counted in negspace_reloads_total by the Guard, whatever the answer
        if settings.admin_token is None:
            return answer(403, {"error": "reload over HTTP is off: start the server with "
                                         "--admin-token-file, or send SIGHUP"})
        if settings.workers > 1:
            return answer(409, {"error": "with several workers, send SIGHUP to the main process "
                                         "(every worker reloads)"})
        name = body.run_dir if body else None
        try:
            new = await asyncio.to_thread(holder.reload, name)
        except ReloadOff as e:
            return answer(403, {"error": str(e)})
        except UnknownRun as e:
            return answer(404, {"error": str(e), "model_version": holder.current.version})
        except ReloadBusy as e:
            return answer(409, {"error": str(e), "model_version": holder.current.version})
        except NegspaceError as e:
            return answer(422, {"error": f"reload refused: {' '.join(str(e).split())}",
                                "model_version": holder.current.version})
        return answer(200, {"model_version": new.version, "run_dir": new.info["run_dir"]})

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
            keys: list, seen: Interactions | None = None, single: bool = False,
            history_rows: np.ndarray | None = None) -> Response:
    """Ranks with the Recommender and answers {"model_version", "exact", "results"|...}.
    `history_rows`: each vector's history in `seen` (or the training data), which a run with an
    item filter scores."""
    # the index answers plain top-k; candidate lists and exclusions rank exactly
    exact = not m.use_index or body.candidates is not None or body.exclude is not None
    top, scores = m.rec.rank_vectors(vectors, seen_rows, body.k, items=body.candidates,
                                     exclude=body.exclude, use_index=not exact, seen=seen,
                                     history_rows=history_rows)
    item_ids = m.rec.train.item_ids
    parts = []  # one user's JSON at a time: other threads get the GIL between them
    for key, t, s in zip(keys, top, scores):
        valid = t >= 0
        one = {"user": key, "items": item_ids[t[valid]].tolist(),
               "scores": s[valid].astype(np.float64).tolist()}
        if single:
            return answer(200, {"model_version": m.version, "exact": exact,
                                "items": one["items"], "scores": one["scores"]})
        parts.append(json.dumps(one, separators=(",", ":"), allow_nan=False))
    text = (f'{{"model_version":{m.version},"exact":{"true" if exact else "false"},'
            f'"results":[{",".join(parts)}]}}')
    return Response(text.encode(), status_code=200, media_type="application/json")
