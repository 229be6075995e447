"""Request bodies (strict types: a string is never read as a number, nor a number as a bool) and
the limits that bound what one request may cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Union

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictFloat,
                      StrictInt, StrictStr)

from negspace.serving.holder import MAX_NAME


@dataclass(frozen=True)
class Limits:
    """Bounds on one request.

    Args:
        max_users: users in one /recommend request.
        max_k: items per user.
        max_items: entries of `exclude`, `candidates` and a new user's `items`.
        max_body_bytes: request body size (413 above it).
    """

    max_users: int = 1000
    max_k: int = 1000
    max_items: int = 10_000
    max_body_bytes: int = 1 << 20




def _integral(value: object) -> object:
    """175.0 is an integer to JSON Schema (and to JavaScript): read it as 175; 1.5 stays refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Int = Annotated[StrictInt, BeforeValidator(_integral)]
# External ids are stored as numbers or strings; both forms are accepted and looked up by their
# string form, as `Interactions.user_index` does.
Id = Union[Int, StrictStr]
# a run below the model root: plain names, no component starting with a dot (so no `..`)
RUN_NAME = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$"
FeatureValue = Union[StrictInt, StrictFloat, StrictStr, StrictBool, None]


def request_models(limits: Limits) -> tuple[type[BaseModel], type[BaseModel], type[BaseModel],
                                             type[BaseModel]]:
    """The request bodies with these limits built in (422 beyond them).

    Returns:
        (RecommendRequest, NewUserRequest, SimilarRequest, ReloadRequest).
    """
    # the bounds before the validator, or pydantic writes them as "ge"/"le", not JSON Schema
    K = Annotated[StrictInt, Field(ge=1, le=limits.max_k), BeforeValidator(_integral)]
    Items = Annotated[list[Id], Field(max_length=limits.max_items)]
    strict = ConfigDict(extra="forbid")

    class _Ranking(BaseModel):  # what every request that ranks items for a user takes
        model_config = strict
        k: K = 10
        exclude_seen: StrictBool = True
        exclude: Items | None = None
        candidates: Items | None = None

    class RecommendRequest(_Ranking):
        users: Annotated[list[Id], Field(min_length=1, max_length=limits.max_users)]

    class NewUserRequest(_Ranking):
        items: Items = []
        features: Annotated[dict[StrictStr, FeatureValue], Field(max_length=200)] | None = None

    class SimilarRequest(BaseModel):
        model_config = strict
        item: Id
        k: K = 10

    class ReloadRequest(BaseModel):
        model_config = strict
        # a name under --model-root, not a path
        run_dir: Annotated[StrictStr, Field(min_length=1, max_length=MAX_NAME,
                                            pattern=RUN_NAME)] | None = None

    return RecommendRequest, NewUserRequest, SimilarRequest, ReloadRequest
