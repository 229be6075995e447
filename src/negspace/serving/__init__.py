"""`negspace serve`: a run directory over HTTP (FastAPI + uvicorn, the `serve` extra).

- `holder.py`: the served model, loaded and checked off the request path, swapped atomically;
- `schemas.py`: request bodies and limits; `auth.py`: the bearer token;
- `metrics.py`: Prometheus counters and histograms; `app.py`: the routes and error answers;
- `guard.py`: Host, tokens, body and in-flight limits; `openapi.py`: /openapi.json;
- `server.py`: uvicorn, SIGHUP; `supervisor.py`: several workers; `protocol.py`: read deadline.
"""

from negspace.serving.holder import LoadedModel, ModelHolder, load_model
from negspace.serving.schemas import Limits

__all__ = ["LoadedModel", "ModelHolder", "load_model", "Limits"]
