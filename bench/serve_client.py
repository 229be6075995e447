"""A small HTTP/1.1 client for bench/serve_load.py: keep-alive connections on asyncio streams
(no third-party client, so that the client's own cost stays low beside the server on a 2-core
machine), closed-loop and open-loop load, and the hostile requests.

Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field

HOST = "127.0.0.1"


@dataclass
class Phase:
    """Outcome of one load phase: per-request latency (s) and status; 0 = connection failure."""

    latencies: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict:
        lat = sorted(self.latencies)
        n = len(lat)

        def q(p: float) -> float:
            return round(1000 * lat[min(n - 1, int(p * n))], 2) if n else float("nan")
        ok = sum(1 for s in self.statuses if s == 200)
        return {"requests": n, "ok": ok, "failed": n - ok, "seconds": round(self.seconds, 2),
                "per_second": round(n / self.seconds, 1) if self.seconds else 0.0,
                "p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99), "max_ms": q(1.0)}


def request(method: str, path: str, body: bytes | None = None, token: str | None = None,
            extra: dict[str, str] | None = None) -> bytes:
    """The bytes of one HTTP/1.1 request (keep-alive)."""
    headers = {"Host": f"{HOST}", "Connection": "keep-alive"}
    if body is not None:
        headers["Content-Type"] = "application/json"
        headers["Content-Length"] = str(len(body))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    headers.update(extra or {})
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + (body or b"")


class Connection:
    """One keep-alive connection; reconnects after the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, data: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
        """Sends a request and reads the answer: (status, body); status 0 on a network error."""
        try:
            return await asyncio.wait_for(self._send(data), timeout)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
            await self.close()
            return 0, b""

    async def _send(self, data: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        self.writer.write(data)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:] if line)}
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


async def closed_loop(port: int, payloads: list[bytes], connections: int, count: int,
                      duration: float) -> Phase:
    """`connections` clients each sending the next request when the last one is answered, until
    `count` requests or `duration` seconds, whichever comes first."""
    phase, sent = Phase(), [0]
    end = time.perf_counter() + duration

    async def client(conn: Connection) -> None:
        while sent[0] < count and time.perf_counter() < end:
            data = payloads[sent[0] % len(payloads)]
            sent[0] += 1
            t = time.perf_counter()
            status, _ = await conn.send(data)
            phase.latencies.append(time.perf_counter() - t)
            phase.statuses.append(status)
        await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(Connection(port)) for _ in range(connections)))
    phase.seconds = time.perf_counter() - start
    return phase


async def open_loop(port: int, payloads: list[bytes], rate: float, count: int, duration: float,
                    connections: int = 32, during: "asyncio.Future | None" = None) -> Phase:
    """Requests sent at a fixed rate whatever the answers, latency counted from the scheduled
    send time (a slow answer delays no later request's clock: no coordinated omission)."""
    phase = Phase()
    n = min(count, int(rate * duration))
    queue: asyncio.Queue = asyncio.Queue()

    async def client(conn: Connection) -> None:
        while True:
            item = await queue.get()
            if item is None:
                await conn.close()
                return
            i, scheduled = item
            status, _ = await conn.send(payloads[i % len(payloads)])
            phase.latencies.append(time.perf_counter() - scheduled)
            phase.statuses.append(status)

    conns = [Connection(port) for _ in range(connections)]
    # connections opened before the clock starts: the phase measures keep-alive traffic
    await asyncio.gather(*(c.send(request("GET", "/health")) for c in conns))
    workers = [asyncio.create_task(client(c)) for c in conns]
    start = time.perf_counter()
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((i, scheduled))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    phase.seconds = time.perf_counter() - start
    if during is not None:
        await during
    return phase


def hostile_requests(users: list, items: list, token: str | None, n: int = 1000,
                     seed: int = 0) -> list[tuple[str, bytes]]:
    """`n` malformed or hostile requests, each (kind, bytes): fuzzed bodies, huge k, wrong
    tokens, oversized and deeply nested bodies, unknown ids, bad headers, paths and methods."""
    rng = random.Random(seed)
    good = json.dumps({"users": [users[0]], "k": 10}).encode()

    def post(body: bytes, path: str = "/recommend", tok: str | None = token,
             extra: dict | None = None) -> bytes:
        return request("POST", path, body, tok, extra)

    def mutate(data: bytes) -> bytes:
        """Random edits of a valid body, redone until the result is not JSON (an edit that
        leaves a valid request, k 10 -> 13 say, would rightly be answered 200)."""
        while True:
            b = _edit(data)
            try:
                json.loads(b)
            except ValueError:
                return b

    def _edit(data: bytes) -> bytes:
        b = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            op, pos = rng.randrange(3), rng.randrange(len(b) + 1)
            if op == 0 and b:
                del b[min(pos, len(b) - 1)]
            elif op == 1:
                b.insert(pos, rng.choice(b'{}[]":,0-9eE.\\\x00\xff '))
            elif b:
                b[min(pos, len(b) - 1)] = rng.randrange(256)
        return bytes(b)

    makers = [
        ("wrong token", lambda: post(good, tok="not-the-token")),
        ("no token", lambda: post(good, tok=None)),
        ("basic auth", lambda: post(good, tok=None, extra={"Authorization": f"Basic {token}"})),
        ("fuzzed body", lambda: post(mutate(good))),
        ("random bytes", lambda: post(bytes(rng.randrange(256)
                                            for _ in range(rng.randint(1, 300))))),
        ("truncated JSON", lambda: post(good[:rng.randint(1, len(good) - 1)])),
        ("huge k", lambda: post(json.dumps({"users": [users[0]],
                                            "k": rng.choice([10**6, 10**9, 10**30])}).encode())),
        ("k not positive", lambda: post(json.dumps({"users": [users[0]],
                                                    "k": rng.choice([0, -1, -10**9])}).encode())),
        ("k of wrong type", lambda: post(json.dumps({
            "users": [users[0]], "k": rng.choice(["10", 1.5, None, [10], True])}).encode())),
        ("users of wrong type", lambda: post(json.dumps({"users": rng.choice(
            [users[0], [None], [1.5], [True], [[users[0]]], {}, []])}).encode())),
        ("too many users", lambda: post(json.dumps({"users": [users[0]] * 1001}).encode())),
        ("unknown users", lambda: post(json.dumps({"users": [f"nobody-{rng.random()}"]}).encode())),
        ("unknown items", lambda: post(json.dumps({
            "users": [users[0]], "exclude": [f"no-item-{rng.random()}"]}).encode())),
        ("extra field", lambda: post(json.dumps({"users": [users[0]], "drop": "table"}).encode())),
        ("deep nesting", lambda: post(b"[" * 100_000 + b"]" * 100_000)),
        ("oversized body", lambda: post(b'{"users": [' + b'"x",' * 300_000 + b'"x"]}')),
        ("bad content-length", lambda: request("POST", "/recommend", None, token,
                                               {"Content-Length": "-5"}) + good),
        ("unknown path", lambda: request("GET", f"/admin/{rng.randrange(10**6)}", None, token)),
        ("wrong method", lambda: request(rng.choice(["GET", "PUT", "DELETE"]), "/recommend",
                                         None, token)),
        ("reload, wrong token", lambda: post(b"{}", "/reload", tok="guess")),
        ("reload, broken run", lambda: post(json.dumps({"run_dir": "/nonexistent/run"}).encode(),
                                            "/reload")),
        ("new user, bad items", lambda: post(json.dumps({"items": [f"x{rng.random()}"]}).encode(),
                                             "/recommend/new")),
        ("similar, unknown item", lambda: post(json.dumps({"item": "no-such-item"}).encode(),
                                               "/similar")),
    ]
    return [(kind, make()) for kind, make in (makers[i % len(makers)] for i in range(n))]


async def send_once(port: int, data: bytes) -> int:
    """One request on a fresh connection: the status, or 0 when the connection failed."""
    conn = Connection(port)
    status, _ = await conn.send(data, timeout=30.0)
    await conn.close()
    return status
