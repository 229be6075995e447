"""/openapi.json: the routes' answers as they are sent, error shapes and statuses included.

The schema is built per request from the served model: a new user's `features` (two-tower runs)
and whether `items` may be empty depend on it, so a reload may change them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from negspace.serving.schemas import Id


class ErrorAnswer(BaseModel):
    """Every error: `error` says what was wrong; some carry more (listed)."""

    model_config = ConfigDict(extra="forbid")
    error: str
    detail: list[dict[str, Any]] | None = None  # 422 from validation: [{"loc", "msg"}]
    users: list[Id] | None = None  # 404: the unknown ids (at most 100) and their count
    items: list[Id] | None = None
    count: int | None = None
    model_version: int | None = None  # /reload: the version still served


class Health(BaseModel):
    status: str
    model_version: int


class Ranked(BaseModel):
    user: Id
    items: list[Id]
    scores: list[float]


class RecommendAnswer(BaseModel):
    model_version: int
    exact: bool
    results: list[Ranked]


class NewUserAnswer(BaseModel):
    model_version: int
    exact: bool
    items: list[Id]
    scores: list[float]


class SimilarAnswer(BaseModel):
    model_version: int
    item: Id
    items: list[Id]
    scores: list[float]


class ReloadAnswer(BaseModel):
    model_version: int
    run_dir: str


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    words = {400: "malformed JSON, bad Content-Length, a Host not allowed, or a request the "
                  "model cannot answer", 403: "reload over HTTP is off",
             404: "unknown ids (named) or no such run", 409: "a reload is running, or several "
                  "workers", 413: "body over --max-body-bytes",
             415: "Content-Type not application/json (no token set)",
             422: "a field missing, of the wrong type or out of bounds",
             503: "too many requests in flight (Retry-After: 1)"}
    return {code: {"model": ErrorAnswer, "description": words[code]} for code in codes}


BODY = (400, 413, 415, 422, 503)  # what any route taking a JSON body may answer
RANKING = {"responses": {**_errors(404, *BODY)}}
RECOMMEND = {"responses": {200: {"model": RecommendAnswer}, **RANKING["responses"]}}
NEW_USER = {"responses": {200: {"model": NewUserAnswer}, **RANKING["responses"]}}
SIMILAR = {"responses": {200: {"model": SimilarAnswer}, **RANKING["responses"]}}
RELOAD = {"responses": {200: {"model": ReloadAnswer}, **_errors(403, 404, 409, *BODY)}}
HEALTH = {"responses": {200: {"model": Health}, **_errors(400)}}
MODEL = {"responses": {200: {"content": {"application/json": {"schema": {"type": "object"}}},
                             "description": "the served run: model, counts, metrics, version"},
                       **_errors(400, 503)}}
METRICS = {"responses": {200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                               "description": "Prometheus text exposition"}, **_errors(400)}}


def finish(schema: dict, model: Any, token: bool, admin: bool) -> dict:
    """Adds what depends on the served model and the tokens to FastAPI's schema.

    Args:
        schema: `get_openapi`'s output (modified and returned).
        model: the LoadedModel served now.
        token: a bearer token guards the routes (401 on every one but /health).
        admin: POST /reload has its admin token.
    """
    bodies = schema["components"]["schemas"]
    train = model.rec.train
    users, items = train.user_ids[:2].tolist(), train.item_ids[:3].tolist()
    # real ids as examples, so that a client (or a fuzzer) reaches answers, not only 404s
    bodies["RecommendRequest"]["examples"] = [{"users": users, "k": 5}]
    bodies["SimilarRequest"]["examples"] = [{"item": items[0], "k": 5}]
    bodies["NewUserRequest"]["examples"] = [{"items": items, "k": 5}]
    new_user = bodies["NewUserRequest"]
    props = new_user["properties"]
    if not model.two_tower:  # a fold-in needs items, and reads no features
        props["items"] = {**props["items"], "minItems": 1}
        props.pop("features", None)
        new_user["required"] = sorted(set(new_user.get("required", [])) | {"items"})
    else:
        columns = {}
        for c in model.rec._user_encoder or []:
            if c["kind"] == "numeric":
                columns[c["name"]] = {"type": ["number", "null"]}
            elif "values" in c:
                columns[c["name"]] = {"enum": [*c["values"], None]}
            else:
                columns[c["name"]] = {"type": ["string", "integer", "null"]}
        props["features"] = {"anyOf": [{"type": "object", "properties": columns,
                                        "additionalProperties": False}, {"type": "null"}]}
    schemes = {}
    if token:
        schemes["bearer"] = {"type": "http", "scheme": "bearer"}
    if admin:
        schemes["admin"] = {"type": "http", "scheme": "bearer",
                            "description": "the --admin-token-file token"}
    if schemes:
        schema["components"]["securitySchemes"] = schemes
    unauthorized = {"description": "missing or wrong bearer token",
                    "content": {"application/json": {"schema": {
                        "$ref": "#/components/schemas/ErrorAnswer"}}}}
    for path, ops in schema["paths"].items():
        for op in ops.values():
            guarded = "admin" if path == "/reload" and admin else "bearer" if token else None
            if path == "/health" or guarded is None:
                op["security"] = []
            else:
                op["security"] = [{guarded: []}]
                op["responses"]["401"] = unauthorized
    return schema
