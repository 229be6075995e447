"""A real `negspace serve` process: uvicorn on 127.0.0.1 at a free port, queried over HTTP, told
to reload with SIGHUP (a new run, then a broken one it must refuse), and stopped with SIGTERM."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from negspace.cli import main

from tests.serving.test_app import ADMIN, TOKEN

DEADLINE = 60.0  # seconds for the process to come up (imports torch) or to answer a reload


class Server:
    """A `negspace serve` process on port 0: the server binds it and prints the port, read back
    here (no free-port-then-reuse race). stderr is read as it comes into `lines`."""

    def __init__(self, *args: str, env: dict | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "negspace.cli", "serve", *args, "--port", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        found = wait_for(lambda: re.search(r"listening on http://[^ ]+:(\d+)", self.log),
                         "the port", self)
        self.port = int(found.group(1))

    def _read(self) -> None:
        for line in iter(self.proc.stderr.readline, b""):
            self.lines.append(line.decode(errors="replace"))

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def poll(self):
        return self.proc.poll()

    def stop(self) -> None:
        workers = self.workers
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for pid in workers:  # (gone already when the supervisor stopped them)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    @property
    def workers(self) -> list[int]:
        return children(self.proc.pid) if self.proc.poll() is None else []


def call(port: int, path: str, body: dict | None = None, timeout: float = 5.0,
         token: str | None = None) -> tuple[int, dict | str]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            text, status = r.read().decode(), r.status
    except urllib.error.HTTPError as e:
        text, status = e.read().decode(), e.code
    return status, (json.loads(text) if text.startswith("{") else text)


def children(pid: int) -> list[int]:
    """Worker process ids: the children but multiprocessing's resource tracker."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            try:
                if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
            except OSError:  # gone meanwhile
                pass
    return found


def wait_for(check, what: str, server: "Server", deadline: float = DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if server.poll() is not None:
            time.sleep(0.5)  # the rest of its stderr
            raise AssertionError(f"server exited ({server.poll()}) waiting for {what}: "
                                 f"{server.log[-2000:]}")
        try:
            value = check()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def point(link: Path, target: Path) -> None:
    """Repoints a symbolic link atomically (as an operator would: ln -s, then mv -T)."""
    tmp = link.with_name(link.name + ".next")
    tmp.symlink_to(target)
    os.replace(tmp, link)


def broken_run(runs, tmp_path: Path) -> Path:
    broken = tmp_path / "broken"
    shutil.copytree(runs["mf"], broken)
    (broken / "metrics.json").unlink()
    return broken


def test_real_server_reloads_on_sighup_and_stops(runs, tmp_path):
    link = tmp_path / "current"
    link.symlink_to(runs["mf"])
    server = Server(str(link))
    port = server.port
    try:
        wait_for(lambda: call(port, "/health")[0] == 200, "startup", server)
        status, body = call(port, "/recommend", {"users": ["u3"], "k": 4})
        assert status == 200 and body["model_version"] == 1
        assert len(body["results"][0]["items"]) == 4
        assert call(port, "/recommend", {"users": ["nobody"]})[0] == 404
        assert call(port, "/model")[1]["model"] == "mf"
        assert call(port, "/reload", {})[0] == 403  # no admin token: off

        # point the link at another run and send SIGHUP: the new model serves as version 2
        point(link, runs["cml"])
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: call(port, "/model")[1]["version"] == 2, "reload to the cml run", server)
        assert call(port, "/model")[1]["model"] == "cml"

        # a half-written run: refused, version 2 keeps serving
        point(link, broken_run(runs, tmp_path))
        server.proc.send_signal(signal.SIGHUP)
        refused = 'negspace_reloads_total{result="refused"} 2.0'  # the POST, then the SIGHUP
        wait_for(lambda: refused in call(port, "/metrics")[1], "the refused reload", server)
        status, body = call(port, "/recommend", {"users": ["u3"], "k": 4})
        assert status == 200 and body["model_version"] == 2

        server.proc.send_signal(signal.SIGTERM)
        # uvicorn finishes in-flight requests, then re-raises the signal it caught
        assert server.proc.wait(timeout=20) in (0, -signal.SIGTERM)
        server.reader.join(5)
        assert "refused" in server.log and "Finished server process" in server.log
        assert "Traceback" not in server.log
    finally:
        server.stop()


def test_serve_refuses_bad_setups_in_one_line(runs, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["serve", str(tmp_path / "empty")]) == 2
    assert "not a finished run directory" in capsys.readouterr().err
    assert main(["serve", str(runs["mf"]), "--token-file", str(tmp_path / "none")]) == 2
    assert "token file not found" in capsys.readouterr().err
    (tmp_path / "blank").write_text("\n")
    assert main(["serve", str(runs["mf"]), "--token-file", str(tmp_path / "blank")]) == 2
    assert "empty" in capsys.readouterr().err
    (tmp_path / "token").write_text("same-token")
    assert main(["serve", str(runs["mf"]), "--token-file", str(tmp_path / "token"),
                 "--admin-token-file", str(tmp_path / "token")]) == 2
    assert "another token" in capsys.readouterr().err
    assert main(["serve", str(runs["mf"]), "--model-root", str(tmp_path / "none")]) == 2
    assert "--model-root" in capsys.readouterr().err
    assert main(["serve", str(runs["mf"]), "--read-timeout", "0"]) == 2
    assert "positive" in capsys.readouterr().err
    assert main(["serve", str(runs["cml"]), "--faiss"]) == 2
    assert "items.faiss" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["serve", str(runs["mf"]), "--port", str(busy.getsockname()[1])]) == 2
        err = capsys.readouterr().err
        assert "cannot listen" in err and len(err.strip().splitlines()) == 1


def model_200_counts(port: int, token: str) -> set[float]:
    """The /model 200 counts in /metrics, as each worker (its own registry) reports them."""
    seen = set()
    for _ in range(40):
        text = call(port, "/metrics", token=token)[1]
        found = re.search(r'negspace_requests_total\{route="/model",status="200"\} (\S+)', text)
        seen.add(float(found.group(1)) if found else 0.0)
    return seen


@pytest.mark.slow  # two worker processes start (each imports torch): up to a minute, 2 busy cores
def test_workers_reload_in_place_on_sighup_and_keep_serving_a_refused_run(runs, tmp_path):
    """With --workers 2 the supervisor passes SIGHUP on: each worker reloads in place (same
    processes, version 2), a refused run leaves every worker its model. The token, the admin
    token and the --max-* limits reach the workers; POST /reload gets the several-workers 409;
    both workers answer."""
    link = tmp_path / "current"
    link.symlink_to(runs["mf"])
    (tmp_path / "token").write_text(TOKEN)
    (tmp_path / "admin").write_text(ADMIN)
    server = Server(str(link), "--workers", "2", "--token-file", str(tmp_path / "token"),
                    "--admin-token-file", str(tmp_path / "admin"), "--max-k", "7",
                    "--max-users", "2")
    port = server.port
    try:
        # a worker still loading ignores SIGHUP (it reads the run when it starts): wait for both
        wait_for(lambda: server.log.count("Application startup complete") == 2, "both workers",
                 server, 120)
        workers = set(server.workers)
        assert len(workers) == 2
        assert call(port, "/model")[0] == 401  # the token reached the workers
        assert call(port, "/recommend", {"users": ["u1"], "k": 8}, token=TOKEN)[0] == 422
        assert call(port, "/recommend", {"users": ["u1"] * 3}, token=TOKEN)[0] == 422
        assert call(port, "/recommend", {"users": ["u1"], "k": 7}, token=TOKEN)[0] == 200
        assert call(port, "/reload", {}, token=TOKEN)[0] == 401  # not the admin token
        status, body = call(port, "/reload", {}, token=ADMIN)
        assert status == 409 and "SIGHUP" in body["error"]
        for _ in range(40):
            assert call(port, "/model", token=TOKEN)[0] == 200
        counts = model_200_counts(port, TOKEN)
        # two registries, each with its share of the 40 (one alone would report 40 and 0); an
        # even split, 20 and 20, reads as one distinct value
        shares = sorted(counts) if len(counts) == 2 else sorted(counts) * 2
        assert len(counts) <= 2 and sum(shares) == 40 and min(shares) > 0, counts

        point(link, broken_run(runs, tmp_path))
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: server.log.count("SIGHUP reload refused") == 2, "two refusals", server)
        for _ in range(10):  # every answer still comes from the mf run
            status, body = call(port, "/model", token=TOKEN)
            assert status == 200 and body["model"] == "mf" and body["version"] == 1
        point(link, runs["cml"])
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: all(call(port, "/model", token=TOKEN)[1]["model"] == "cml"
                             for _ in range(20)), "every worker on the cml run", server, 120)
        assert set(server.workers) == workers  # reloaded, not restarted
        assert {call(port, "/model", token=TOKEN)[1]["version"] for _ in range(10)} == {2}
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=60) in (0, -signal.SIGTERM)
        server.reader.join(10)
        assert server.log.count("SIGHUP reload refused") == 2 and "Traceback" not in server.log
    finally:
        server.stop()


@pytest.mark.slow
def test_a_crashed_worker_of_a_broken_run_does_not_stop_the_server(runs, tmp_path):
    """kill -9 one worker while the served link points at a broken run: its replacement cannot
    start, is retried with back-off while the other worker answers; once the link is fixed, a
    SIGHUP brings both workers onto the new run (before: the supervisor stopped everything)."""
    link = tmp_path / "current"
    link.symlink_to(runs["mf"])
    server = Server(str(link), "--workers", "2")
    port = server.port
    try:
        wait_for(lambda: server.log.count("Application startup complete") == 2, "both workers",
                 server, 120)
        first, second = server.workers
        point(link, broken_run(runs, tmp_path))
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: server.log.count("SIGHUP reload refused") == 2, "two refusals", server)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: server.log.count("failed to start") >= 2, "two failed restarts", server,
                 120)
        for _ in range(20):  # the healthy worker answers throughout
            assert call(port, "/health")[0] == 200
            assert call(port, "/model")[1]["model"] == "mf"
        assert second in server.workers and server.poll() is None
        point(link, runs["cml"])
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: len(server.workers) == 2 and all(
            call(port, "/model")[1]["model"] == "cml" for _ in range(20)),
            "both workers on the cml run", server, 120)
        assert second in server.workers and first not in server.workers
        assert "Traceback" not in server.log
    finally:
        server.stop()


@pytest.mark.slow
def test_kill_9_of_the_supervisor_frees_the_port(runs):
    """The workers die with their parent (PR_SET_PDEATHSIG): the port is free again soon after
    (before, orphaned workers kept it until killed by hand)."""
    server = Server(str(runs["mf"]), "--workers", "2")
    try:
        wait_for(lambda: server.log.count("Application startup complete") == 2, "both workers",
                 server, 120)
        workers = server.workers
        assert len(workers) == 2 and call(server.port, "/health")[0] == 200
        server.proc.kill()
        server.proc.wait(10)
        end = time.monotonic() + 30
        while any(alive(pid) for pid in workers) and time.monotonic() < end:
            time.sleep(0.2)
        assert not any(alive(pid) for pid in workers)
        with socket.socket() as again:  # (SO_REUSEADDR: TIME_WAIT aside, a listener refuses)
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            again.bind(("127.0.0.1", server.port))
            again.listen()
    finally:
        for pid in server.workers:
            os.kill(pid, signal.SIGKILL)


def test_slow_clients_are_cut_off_and_health_answers(runs):
    """Slowloris: 150 connections sending half their headers and 150 sending half a body are
    all closed within --read-timeout (2 s) plus a margin, while /health answers (before, with
    no read deadline, all 300 were still open after 20 s)."""
    server = Server(str(runs["mf"]), "--read-timeout", "2")
    port, socks = server.port, []
    try:
        wait_for(lambda: call(port, "/health")[0] == 200, "startup", server)
        head = b"POST /recommend HTTP/1.1\r\nHost: localhost\r\n"
        for i in range(300):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(head + (b"Content-Ty" if i % 2 else
                              b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                              b'{"users": ['))
            socks.append(s)
        start = time.monotonic()
        assert call(port, "/health", timeout=2)[0] == 200
        closed = 0
        for s in socks:  # bounded: 10 s in all
            s.settimeout(max(0.05, start + 10 - time.monotonic()))
            try:
                closed += s.recv(1024) == b""
            except ConnectionResetError:
                closed += 1
            except TimeoutError:
                pass
        assert closed == 300, f"{300 - closed} slow connections still open"
        assert call(port, "/health", timeout=2)[0] == 200
    finally:
        for s in socks:
            s.close()
        server.stop()


@pytest.fixture(scope="module")
def big_run(tmp_path_factory):
    """An mf run large enough that ranking all its users at k=1000 takes a while."""
    import torch

    from negspace import Recommender
    from tests.serving.conftest import interactions

    torch.set_num_threads(1)
    frame = interactions(n_users=1000, n_items=4000, per_user=10)
    rec = Recommender("mf", sampler="uniform", dim=64, epochs=1, validation=0, progress=False,
                      threads=1, batch_size=1024, seed=0).fit(frame)
    return rec.save(tmp_path_factory.mktemp("big") / "mf")


def health_during_heavy_ranking(port: int, seconds: float = 4.0) -> tuple[float, int]:
    """The slowest /health answer while three clients rank 940 users at k=1000 in a loop, and
    how many of those large answers came back."""
    data = json.dumps({"users": [f"u{u}" for u in range(940)], "k": 1000}).encode()
    stop, done, errors = threading.Event(), [0], []

    def heavy() -> None:  # answers read as bytes: parsing 20 MB here would hold this
        try:             # process's GIL and slow the /health timing below
            while not stop.is_set():
                request = urllib.request.Request(f"http://127.0.0.1:{port}/recommend", data=data,
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=60) as r:
                    body = r.read()
                assert r.status == 200 and body.count(b'"user":') == 940, r.status
                done[0] += 1
        except BaseException as e:
            errors.append(e)
    threads = [threading.Thread(target=heavy, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    slowest, end, limit = 0.0, time.monotonic() + seconds, time.monotonic() + 60
    while (time.monotonic() < end or done[0] < 3) and time.monotonic() < limit:
        start = time.perf_counter()
        assert call(port, "/health", timeout=10)[0] == 200
        slowest = max(slowest, time.perf_counter() - start)
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return slowest, done[0]


@pytest.mark.slow
def test_health_stays_fast_while_large_requests_rank(big_run):
    """Ranking runs off the event loop: /health answers within 0.5 s while three clients ask for
    940 users x 1000 items each (before, on the loop, it waited behind them: over 1 s)."""
    server = Server(str(big_run), "--max-users", "1000")
    try:
        wait_for(lambda: call(server.port, "/health")[0] == 200, "startup", server)
        slowest, answered = health_during_heavy_ranking(server.port)
        assert answered >= 3, answered  # the load was there
        assert slowest < 0.5, f"/health took {slowest:.2f} s"
    finally:
        server.stop()
