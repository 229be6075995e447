"""Load on `negspace serve`: throughput and latency of single-user and 100-user requests, exact
and with a faiss index, across reloads, and 1,000 hostile requests (issue 15).

For each run directory and each mode (exact; faiss with RUN_DIR/items.faiss), the bench starts
`negspace serve` on 127.0.0.1 at a free port with a token, then runs, each bounded by a request
count and a duration (whichever ends first):
  1. single-user requests, closed loop (--connections clients): the most the server answers;
  2. single-user requests, open loop at --rate (exact: --exact-rate) requests per second, latency
     from the scheduled send time;
  3. 100-user requests, closed loop;
  4. the open loop of 2 again while POST /reload swaps the model every --reload-every seconds:
     every request must succeed;
then, once per run directory, 1,000 malformed or hostile requests, which must all be answered
4xx, followed by a health check and a valid request. Only 127.0.0.1 is contacted.

Run:  .venv/bin/python bench/serve_load.py RUN_DIR [RUN_DIR ...] [--out results.json]
(RUN_DIR/items.faiss must exist for the faiss mode: negspace export RUN_DIR --faiss --index hnsw)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_client import (Phase, closed_loop, hostile_requests, open_loop, request,  # noqa: E402
                          send_once)

ROOT = Path(__file__).resolve().parent.parent


class Server:
    """`negspace serve` in a child process, stopped with SIGTERM."""

    def __init__(self, run: Path, faiss: bool, token_file: Path, threads: int,
                 workers: int = 1, admin_file: Path | None = None,
                 root: Path | None = None) -> None:
        self.port = 0  # the server binds port 0 and prints the port it got
        cmd = [sys.executable, "-m", "negspace.cli", "serve", str(run), "--port", "0",
               "--token-file", str(token_file), "--threads", str(threads),
               "--workers", str(workers)]
        if admin_file is not None and root is not None:  # POST /reload: names under the root
            cmd += ["--admin-token-file", str(admin_file), "--model-root", str(root)]
        self.cmd = " ".join(["negspace", *cmd[3:]])
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd + (["--faiss"] if faiss else []), cwd=ROOT,
                                     stdout=self.log, stderr=self.log)
        asyncio.run(self._wait())

    async def _wait(self, deadline: float = 120.0) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise SystemExit(f"server exited: {self.log.read().decode()[-2000:]}")
            if not self.port:
                self.log.seek(0)
                found = re.search(rb"listening on http://[^ ]+:(\d+)", self.log.read())
                self.port = int(found.group(1)) if found else 0
            elif await send_once(self.port, request("GET", "/health")) == 200:
                return
            await asyncio.sleep(0.2)
        raise SystemExit("server did not come up")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_seconds(self) -> float:
        """CPU time the server (its process and, with workers, theirs) has used: per request,
        the server's cost whatever else the machine runs."""
        tasks = Path(f"/proc/{self.proc.pid}/task").glob("*/children")
        pids = [self.proc.pid] + [int(c) for t in tasks for c in t.read_text().split()]
        total = 0.0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # a worker replaced meanwhile
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def payloads(users: list, token: str, n_users: int, count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [request("POST", "/recommend", json.dumps(
        {"users": rng.sample(users, n_users), "k": 10}).encode(), token) for _ in range(count)]


async def reloading(port: int, token: str, runs: list[str], every: float, until: float,
                    hup: int | None = None) -> list:
    """POST /reload every `every` seconds (cycling through the names `runs` under the model
    root, with the admin `token`) until `until`; with `hup` (several workers) SIGHUP to that
    process instead, which reloads the served directory."""
    from serve_client import Connection
    conn, answers, i = Connection(port), [], 0
    while time.perf_counter() + every < until:
        await asyncio.sleep(every)
        if hup is not None:
            os.kill(hup, signal.SIGHUP)
            answers.append({"signal": "SIGHUP"})
            continue
        body = json.dumps({"run_dir": runs[i % len(runs)]}).encode()
        t = time.perf_counter()
        status, text = await conn.send(request("POST", "/reload", body, token), timeout=120)
        answers.append({"status": status, "seconds": round(time.perf_counter() - t, 2),
                        "answer": text.decode()[:200]})
        i += 1
    await conn.close()
    return answers


async def hostile(port: int, users: list, items: list, token: str, n: int) -> dict:
    counts: dict[str, dict[int, int]] = {}
    for kind, data in hostile_requests(users, items, token, n):
        status = await send_once(port, data)
        counts.setdefault(kind, {}).setdefault(status, 0)
        counts[kind][status] += 1
    good = payloads(users, token, 1, 1, 0)[0]
    return {"by_kind": counts,
            "all_4xx": all(400 <= s < 500 for c in counts.values() for s in c),
            "health_after": await send_once(port, request("GET", "/health")),
            "valid_after": await send_once(port, good)}


def bench_mode(run: Path, faiss: bool, args: argparse.Namespace, token_file: Path, token: str,
               users: list) -> dict:
    root = Path(tempfile.mkdtemp(dir=token_file.parent))  # the model root: links r0, r1, ...
    names = []
    for i, target in enumerate(args.reload_runs or [run]):
        (root / f"r{i}").symlink_to(Path(target).resolve())
        names.append(f"r{i}")
    admin = secrets.token_hex(16)
    (root.parent / "admin").write_text(admin)
    server = Server(run, faiss, token_file, args.threads, args.workers, root.parent / "admin",
                    root)
    rate = args.rate if faiss else args.exact_rate
    single = payloads(users, token, 1, 4000, 1)
    batch = payloads(users, token, min(100, len(users)), 200, 2)
    out: dict = {"command": server.cmd + (" --faiss" if faiss else "")}

    def measured(run_phase) -> dict:
        cpu = server.cpu_seconds()
        summary = asyncio.run(run_phase).summary()
        used = server.cpu_seconds() - cpu
        return {**summary, "server_cpu_ms_per_request":
                round(1000 * used / max(summary["requests"], 1), 3)}
    try:
        asyncio.run(closed_loop(server.port, single, 2, 200, 5))  # warm-up, not reported
        out["single_closed"] = measured(closed_loop(
            server.port, single, args.connections, args.count, args.duration))
        out["single_open"] = {**measured(open_loop(
            server.port, single, rate, args.count, args.duration)), "rate": rate}
        out["batch100_closed"] = measured(closed_loop(
            server.port, batch, 2, args.count, args.duration))

        async def with_reloads() -> tuple[Phase, list]:
            until = time.perf_counter() + args.duration
            reloads = asyncio.ensure_future(reloading(
                server.port, admin, names, args.reload_every, until,
                server.proc.pid if args.workers > 1 else None))
            phase = await open_loop(server.port, single, rate, args.count, args.duration)
            return phase, await reloads
        phase, reloads = asyncio.run(with_reloads())
        out["single_open_reloading"] = {**phase.summary(), "rate": rate, "reloads": reloads}
        if not faiss:
            out["hostile"] = asyncio.run(hostile(server.port, users, [], token, args.hostile))
        out["server_alive"] = server.alive()
    finally:
        server.stop()
    return out


def table(results: dict) -> str:
    rows = ["| run | mode | requests | users/request | req/s | p50 ms | p95 ms | p99 ms | failed "
            "| server CPU ms/request |", "|---|---|---|---|---|---|---|---|---|---|"]
    names = {"single_closed": ("closed loop", 1), "single_open": ("open loop at {rate}/s", 1),
             "batch100_closed": ("closed loop", 100),
             "single_open_reloading": ("open loop at {rate}/s, reloading", 1)}
    for run, modes in results["runs"].items():
        for mode, phases in modes.items():
            for key, (label, n) in names.items():
                s = phases[key]
                rows.append(f"| {Path(run).name} | {mode} | {label.format(rate=s.get('rate'))} | "
                            f"{n} | {s['per_second']} | {s['p50_ms']} | {s['p95_ms']} | "
                            f"{s['p99_ms']} | {s['failed']} | "
                            f"{s.get('server_cpu_ms_per_request', '')} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories")
    p.add_argument("--modes", default="exact,faiss", help="exact, faiss or both")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per phase (at most)")
    p.add_argument("--count", type=int, default=20000, help="requests per phase (at most)")
    p.add_argument("--connections", type=int, default=4, help="closed-loop clients")
    p.add_argument("--rate", type=float, default=500.0, help="open-loop requests/s with faiss")
    p.add_argument("--exact-rate", type=float, default=200.0, help="open-loop requests/s, exact")
    p.add_argument("--reload-every", type=float, default=3.0, help="seconds between reloads")
    p.add_argument("--reload-runs", type=Path, nargs="*",
                   help="with one RUN_DIR: run directories the reloads cycle through (default: "
                        "the one served, loaded afresh each time)")
    p.add_argument("--hostile", type=int, default=1000, help="hostile requests")
    p.add_argument("--threads", type=int, default=1, help="server threads (negspace serve)")
    p.add_argument("--workers", type=int, default=1, help="server workers (SIGHUP reloads)")
    p.add_argument("--out", type=Path, help="write the results as JSON")
    args = p.parse_args(argv)
    if args.reload_runs and len(args.runs) > 1:
        p.error("--reload-runs goes with one RUN_DIR (its users must exist in every reload)")
    token = secrets.token_hex(16)
    results: dict = {"load_average_before": os.getloadavg(), "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        token_file = Path(tmp) / "token"
        token_file.write_text(token)
        for run in args.runs:
            users = json.loads((run / "ids.json").read_text())["users"]
            results["runs"][str(run)] = {}
            for mode in args.modes.split(","):
                if mode == "faiss" and not (run / "items.faiss").exists():
                    print(f"skip faiss on {run}: no items.faiss (negspace export {run} --faiss "
                          "--index hnsw)", file=sys.stderr)
                    continue
                print(f"{run} {mode} ...", file=sys.stderr, flush=True)
                results["runs"][str(run)][mode] = bench_mode(run, mode == "faiss", args,
                                                             token_file, token, users)
    results["load_average_after"] = os.getloadavg()
    print(table(results))
    for run, modes in results["runs"].items():
        h = modes.get("exact", {}).get("hostile")
        if h:
            print(f"{Path(run).name}: {sum(sum(c.values()) for c in h['by_kind'].values())} "
                  f"hostile requests, all 4xx: {h['all_4xx']}; health after: "
                  f"{h['health_after']}, valid request after: {h['valid_after']}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
