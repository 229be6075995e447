"""Running the app under uvicorn: one process or several workers under uvicorn's supervisor.
SIGHUP reloads in place either way: the supervisor passes it to every worker, and each loads the
run beside its model and swaps (a refused run leaves each worker its model). Workers are not
restarted for a reload, so no connection is closed under a client."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import torch

from negspace.errors import NegspaceError
from negspace.serving.app import ServeSettings, create_app
from negspace.serving.auth import read_token
from negspace.serving.holder import ModelHolder, load_model
from negspace.serving.schemas import Limits

ENV = "NEGSPACE_SERVE"  # a worker process's settings (JSON), set by the main process
LOOPBACK = ("127.0.0.1", "localhost", "::1")
WORKER_START_S = 300  # seconds a (replacement) worker may take to load its run and come up


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000,
          use_faiss: bool = False, workers: int = 1, token_file: str | None = None,
          threads: int = 1, limits: Limits | None = None, access_log: bool = False,
          log_level: str = "info") -> None:
    """Serves a run directory until SIGINT or SIGTERM (requests in flight are finished).

    Args:
        run_dir: the run directory (read only; a symbolic link is followed anew at each reload).
        host, port: where to listen (loopback unless told otherwise).
        use_faiss: rank with RUN_DIR/items.faiss (`negspace export --faiss`).
        workers: worker processes.
        token_file: file holding the bearer token; None: no authentication.
        threads: torch (and faiss) threads per worker.
        limits: per-request bounds.
        access_log: log every request (costs throughput).
        log_level: uvicorn's log level.

    Raises:
        NegspaceError: a refused run directory, token file or address, before anything listens.
    """
    import uvicorn

    # until the server's own handler is in place, a SIGHUP (an early reload request) must not
    # end the process, which is SIGHUP's default action
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if workers < 1 or threads < 1 or not 0 <= port <= 65535:
        raise NegspaceError("need --workers >= 1, --threads >= 1 and a port in 0..65535")
    token = read_token(token_file) if token_file else None
    if host not in LOOPBACK and token is None:
        print(f"negspace: warning: listening on {host} without --token-file: anyone who can "
              "reach it can query the model", file=sys.stderr)
    _check_address(host, port)
    limits = limits or Limits()
    set_threads(threads)
    model = load_model(run_dir, use_faiss)  # refused here in one line, before listening
    common = dict(host=host, port=port, access_log=access_log, log_level=log_level,
                  timeout_graceful_shutdown=10)
    # what is loaded now lives as long as the server: out of the cyclic collector's full passes
    gc.collect()
    gc.freeze()
    if workers == 1:
        app = create_app(ModelHolder(model, run_dir),
                         ServeSettings(limits, token, workers=1, sighup=True))
        uvicorn.run(app, **common)
        return
    del model
    gc.collect()  # each worker loads its own copy
    os.environ[ENV] = json.dumps({"run_dir": str(run_dir), "faiss": use_faiss,
                                  "token_file": token_file, "threads": threads,
                                  "workers": workers, "limits": dataclasses.asdict(limits)})
    # a worker loads its model before it answers the supervisor's pings: allow for a large run
    config = uvicorn.Config("negspace.serving.server:app_from_env", factory=True,
                            workers=workers, timeout_worker_healthcheck=WORKER_START_S, **common)
    _supervisor()(config, sockets=[config.bind_socket()]).run()


def _supervisor() -> type:
    """uvicorn's worker supervisor with SIGHUP passed on to the workers. uvicorn's own answer to
    SIGHUP replaces every worker, and a retiring worker closes its keep-alive connections: a
    request sent on one as it closes failed (7 of 5,000 in bench/serve_load.py)."""
    from uvicorn.supervisors.multiprocess import Multiprocess

    class Supervisor(Multiprocess):
        def handle_hup(self) -> None:
            for process in self.processes:
                if process.pid is not None:
                    os.kill(process.pid, signal.SIGHUP)
    return Supervisor


def app_from_env() -> Any:
    """A worker process's app, from the settings the main process left in $NEGSPACE_SERVE."""
    spec = json.loads(os.environ[ENV])
    set_threads(spec["threads"])
    token = read_token(spec["token_file"]) if spec["token_file"] else None
    try:
        model = load_model(spec["run_dir"], spec["faiss"])
    except NegspaceError as e:  # (a worker restarted after a crash, its run since broken)
        print(f"negspace: worker refused the run: {' '.join(str(e).split())}", file=sys.stderr)
        raise SystemExit(3) from None
    return create_app(ModelHolder(model, spec["run_dir"]),
                      ServeSettings(Limits(**spec["limits"]), token, workers=spec["workers"],
                                    sighup=True))


def set_threads(threads: int) -> None:
    """Intra-op threads of torch and faiss. One per worker by default: a request's products are
    small, and two threads synchronising cost more than they gain on them."""
    torch.set_num_threads(threads)
    try:
        import faiss
        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass


def _check_address(host: str, port: int) -> None:
    """Refuses an address that cannot be listened on, in one line (uvicorn would log and exit)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            raise NegspaceError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
