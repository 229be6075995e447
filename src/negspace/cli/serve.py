"""`negspace serve`: its flags and its command (the service itself is in serving/)."""

from __future__ import annotations

import argparse
from typing import Any

from negspace.errors import NegspaceError


def add_serve_parser(sub: Any) -> None:
    srv = sub.add_parser("serve", help="answer recommendation requests over HTTP (serve extra)")
    srv.add_argument("run_dir", help="finished run directory (read only; SIGHUP reloads it)")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    srv.add_argument("--port", type=int, default=8000, help="0: any free port (printed)")
    srv.add_argument("--faiss", action="store_true",
                     help="rank with RUN_DIR/items.faiss (see export); seen items still filtered")
    srv.add_argument("--workers", type=int, default=1, help="worker processes")
    srv.add_argument("--token-file", metavar="FILE",
                     help="every route but /health needs 'Authorization: Bearer <token in FILE>'")
    srv.add_argument("--threads", type=int, default=1, help="torch/faiss threads per worker")
    srv.add_argument("--max-users", type=int, default=1000, help="users per request")
    srv.add_argument("--max-k", type=int, default=1000, help="items per user")
    srv.add_argument("--max-body-bytes", type=int, default=1 << 20, help="request body size")
    srv.add_argument("--access-log", action="store_true", help="log every request")
    srv.add_argument("--admin-token-file", metavar="FILE",
                     help="POST /reload needs this token (another than --token-file); "
                          "without it, reloads over HTTP are off (SIGHUP still reloads)")
    srv.add_argument("--model-root", metavar="DIR",
                     help="POST /reload {\"run_dir\": NAME} may load DIR/NAME only")
    srv.add_argument("--allowed-hosts", metavar="NAMES",
                     help="Host header names accepted, comma-separated ('*': any); default: "
                          "loopback names without --token-file, any with it")
    srv.add_argument("--read-timeout", type=float, default=10.0,
                     help="seconds a connection has to send a whole request")
    srv.add_argument("--keep-alive", type=int, default=5, help="seconds an idle connection stays")
    srv.add_argument("--max-connections", type=int, default=1000,
                     help="open connections per worker (beyond: 503)")
    srv.add_argument("--max-inflight", type=int, default=64,
                     help="requests in flight per worker (beyond: 503 with Retry-After)")


def serve_command(args: argparse.Namespace) -> int:
    try:
        from negspace.serving.schemas import Limits
        from negspace.serving.server import Network, serve
    except ImportError as e:
        raise NegspaceError(f"negspace serve needs the serve extra (missing {e.name}): "
                            "pip install 'negspace[serve]'") from None

    if min(args.max_users, args.max_k, args.max_body_bytes) < 1:
        raise NegspaceError("--max-users, --max-k and --max-body-bytes must be >= 1")
    hosts = None if args.allowed_hosts is None else tuple(
        h.strip() for h in args.allowed_hosts.split(",") if h.strip())
    serve(args.run_dir, host=args.host, port=args.port, use_faiss=args.faiss,
          workers=args.workers, token_file=args.token_file, threads=args.threads,
          limits=Limits(max_users=args.max_users, max_k=args.max_k,
                        max_body_bytes=args.max_body_bytes), access_log=args.access_log,
          admin_token_file=args.admin_token_file, model_root=args.model_root,
          allowed_hosts=hosts,
          network=Network(args.read_timeout, args.keep_alive, args.max_connections,
                          args.max_inflight))
    return 0
