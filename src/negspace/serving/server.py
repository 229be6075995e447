"""Running the app under uvicorn: one process or several workers under negspace's supervisor
(supervisor.py). SIGHUP reloads in place either way: the supervisor passes it to every worker,
and each loads the run beside its model and swaps (a refused run leaves each worker its model).
Workers are not restarted for a reload, so no connection is closed under a client. The main
process binds the socket itself (port 0 picks a free port, printed on stderr)."""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import json
import os
import signal
import socket
import sys
import threading
import time
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
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclasses.dataclass(frozen=True)
class Network:
    """Connection limits (slowloris and floods).

    Args:
        read_timeout: seconds a connection has to send a whole request (head and body), from
            connecting or from its previous answer; then it is closed.
        keep_alive: seconds an idle keep-alive connection stays open.
        max_connections: open connections per worker; beyond, uvicorn answers 503 (plain text).
        max_inflight: requests in flight per worker; beyond, 503 JSON with Retry-After.
    """

    read_timeout: float = 10.0
    keep_alive: int = 5
    max_connections: int = 1000
    max_inflight: int = 64


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000,
          use_faiss: bool = False, workers: int = 1, token_file: str | None = None,
          threads: int = 1, limits: Limits | None = None, access_log: bool = False,
          log_level: str = "info", admin_token_file: str | None = None,
          model_root: str | None = None, allowed_hosts: tuple[str, ...] | None = None,
          network: Network | None = None) -> None:
    """Serves a run directory until SIGINT or SIGTERM (requests in flight are finished).

    Args:
        run_dir: the run directory (read only; a symbolic link is followed anew at each reload).
        host, port: where to listen (loopback unless told otherwise; port 0: any free port).
        use_faiss: rank with RUN_DIR/items.faiss (`negspace export --faiss`).
        workers: worker processes.
        token_file: file holding the bearer token; None: no authentication.
        threads: torch (and faiss) threads per worker.
        limits: per-request bounds.
        access_log: log every request (costs throughput).
        log_level: uvicorn's log level.
        admin_token_file: file holding POST /reload's token; None: reloads over HTTP are off.
        model_root: the directory whose runs POST /reload may name; None: only the source.
        allowed_hosts: Host header names accepted (default: loopback names without a token).
        network: timeouts and connection limits.

    Raises:
        NegspaceError: a refused run directory, token file, model root or address, before
            anything listens.
    """
    import uvicorn

    from negspace.serving.protocol import DeadlineProtocol

    # until the server's own handler is in place, a SIGHUP (an early reload request) must not
    # end the process, which is SIGHUP's default action
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    network = network or Network()
    if workers < 1 or threads < 1 or not 0 <= port <= 65535:
        raise NegspaceError("need --workers >= 1, --threads >= 1 and a port in 0..65535")
    if network.read_timeout <= 0 or network.keep_alive < 1 or network.max_connections < 1 \
            or network.max_inflight < 1:
        raise NegspaceError("--read-timeout, --keep-alive, --max-connections and "
                            "--max-inflight must be positive")
    token = read_token(token_file) if token_file else None
    admin = read_token(admin_token_file) if admin_token_file else None
    if admin is not None and admin == token:
        raise NegspaceError("--admin-token-file must hold another token than --token-file")
    if model_root is not None and not Path(model_root).is_dir():
        raise NegspaceError(f"--model-root {model_root}: not a directory")
    if host not in LOOPBACK and token is None:
        print(f"negspace: warning: listening on {host} without --token-file: anyone who can "
              "reach it can query the model" + ("" if allowed_hosts else " (and only loopback "
                                                "Host names are accepted: see --allowed-hosts)"),
              file=sys.stderr)
    limits = limits or Limits()
    set_threads(threads)
    model = load_model(run_dir, use_faiss)  # refused here in one line, before listening
    sock = _bind(host, port)
    spec = {"run_dir": str(run_dir), "faiss": use_faiss, "token_file": token_file,
            "threads": threads, "workers": workers, "limits": dataclasses.asdict(limits),
            "admin_token_file": admin_token_file, "model_root": model_root,
            "allowed_hosts": list(allowed_hosts) if allowed_hosts is not None else None,
            "max_inflight": network.max_inflight, "parent": os.getpid()}
    common = dict(host=host, port=sock.getsockname()[1], access_log=access_log,
                  log_level=log_level, timeout_graceful_shutdown=10, http=DeadlineProtocol,
                  timeout_keep_alive=network.keep_alive,
                  limit_concurrency=network.max_connections)
    # what is loaded now lives as long as the server: out of the cyclic collector's full passes
    gc.collect()
    gc.freeze()
    print(f"negspace: listening on http://{host}:{sock.getsockname()[1]}", file=sys.stderr,
          flush=True)
    if workers == 1:
        app = create_app(ModelHolder(model, run_dir, model_root), _settings(spec, token, admin))
        config = uvicorn.Config(app, **common)
        config.read_timeout = network.read_timeout  # read by DeadlineProtocol
        uvicorn.Server(config).run(sockets=[sock])
        return
    del model
    gc.collect()  # each worker loads its own copy
    os.environ[ENV] = json.dumps(spec)
    from negspace.serving.supervisor import Supervisor

    config = uvicorn.Config("negspace.serving.server:app_from_env", factory=True,
                            workers=workers, **common)
    config.read_timeout = network.read_timeout
    Supervisor(config, [sock], workers).run()


def _settings(spec: dict, token: str | None, admin: str | None) -> ServeSettings:
    hosts = spec["allowed_hosts"]
    return ServeSettings(Limits(**spec["limits"]), token, workers=spec["workers"], sighup=True,
                         admin_token=admin, allowed_hosts=tuple(hosts) if hosts else None,
                         max_inflight=spec["max_inflight"])


def app_from_env() -> Any:
    """A worker process's app, from the settings the main process left in $NEGSPACE_SERVE."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the app's own handler is in place
    spec = json.loads(os.environ[ENV])
    die_with_parent(spec["parent"])
    set_threads(spec["threads"])
    token = read_token(spec["token_file"]) if spec["token_file"] else None
    admin = read_token(spec["admin_token_file"]) if spec["admin_token_file"] else None
    try:
        model = load_model(spec["run_dir"], spec["faiss"])
    except NegspaceError as e:  # (a worker restarted after a crash, its run since broken)
        print(f"negspace: worker refused the run: {' '.join(str(e).split())}", file=sys.stderr)
        raise SystemExit(3) from None
    return create_app(ModelHolder(model, spec["run_dir"], spec["model_root"]),
                      _settings(spec, token, admin))


def die_with_parent(parent: int) -> None:
    """Ends this worker when the supervisor dies, even by kill -9, so that no orphan keeps the
    port: SIGTERM from the kernel on Linux (prctl PR_SET_PDEATHSIG), else a watchdog thread."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
    except (OSError, AttributeError):
        armed = False
    if os.getppid() != parent:  # it died before the prctl
        raise SystemExit(3)
    if not armed:
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os.kill(os.getpid(), signal.SIGTERM)
        threading.Thread(target=watch, daemon=True, name="parent-watchdog").start()


def set_threads(threads: int) -> None:
    """Intra-op threads of torch and faiss. One per worker by default: a request's products are
    small, and two threads synchronising cost more than they gain on them."""
    torch.set_num_threads(threads)
    try:
        import faiss
        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, or the reason it cannot be had in one line (uvicorn would log and
    exit). Bound here once and handed to uvicorn: no free-port-then-rebind race."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError as e:
        sock.close()
        raise NegspaceError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock
