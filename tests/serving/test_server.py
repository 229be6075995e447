"""A real `negspace serve` process: uvicorn on 127.0.0.1 at a free port, queried over HTTP, told
to reload with SIGHUP (a new run, then a broken one it must refuse), and stopped with SIGTERM."""

import json
import os
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

DEADLINE = 60.0  # seconds for the process to come up (imports torch) or to answer a reload


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port: int, path: str, body: dict | None = None,
         timeout: float = 5.0) -> tuple[int, dict | str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     headers={"Content-Type": "application/json"})
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


def wait_for(check, what: str, proc: subprocess.Popen, deadline: float = DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"server exited ({proc.returncode}) waiting for {what}: "
                                 f"{proc.stderr.read().decode()[-2000:]}")
        try:
            value = check()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_real_server_reloads_on_sighup_and_stops(runs, tmp_path):
    link = tmp_path / "current"
    link.symlink_to(runs["mf"])
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "negspace.cli", "serve", str(link),
                             "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    try:
        wait_for(lambda: call(port, "/health")[0] == 200, "startup", proc)
        status, body = call(port, "/recommend", {"users": ["u3"], "k": 4})
        assert status == 200 and body["model_version"] == 1
        assert len(body["results"][0]["items"]) == 4
        assert call(port, "/recommend", {"users": ["nobody"]})[0] == 404
        assert call(port, "/model")[1]["model"] == "mf"

        # point the link at another run and send SIGHUP: the new model serves as version 2
        tmp_link = tmp_path / "next"
        tmp_link.symlink_to(runs["cml"])
        os.replace(tmp_link, link)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: call(port, "/model")[1]["version"] == 2, "reload to the cml run", proc)
        assert call(port, "/model")[1]["model"] == "cml"

        # a half-written run: refused, version 2 keeps serving
        broken = tmp_path / "broken"
        shutil.copytree(runs["mf"], broken)
        (broken / "metrics.json").unlink()
        tmp_link.symlink_to(broken)
        os.replace(tmp_link, link)
        proc.send_signal(signal.SIGHUP)
        refused = 'negspace_reloads_total{result="refused"} 1.0'
        wait_for(lambda: refused in call(port, "/metrics")[1], "the refused reload", proc)
        status, body = call(port, "/recommend", {"users": ["u3"], "k": 4})
        assert status == 200 and body["model_version"] == 2

        proc.send_signal(signal.SIGTERM)
        # uvicorn finishes in-flight requests, then re-raises the signal it caught
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
        log = proc.stderr.read().decode()
        assert "refused" in log and "Finished server process" in log
        assert "Traceback" not in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_serve_refuses_bad_setups_in_one_line(runs, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["serve", str(tmp_path / "empty")]) == 2
    assert "not a finished run directory" in capsys.readouterr().err
    assert main(["serve", str(runs["mf"]), "--token-file", str(tmp_path / "none")]) == 2
    assert "token file not found" in capsys.readouterr().err
    (tmp_path / "blank").write_text("\n")
    assert main(["serve", str(runs["mf"]), "--token-file", str(tmp_path / "blank")]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["serve", str(runs["cml"]), "--faiss"]) == 2
    assert "items.faiss" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["serve", str(runs["mf"]), "--port", str(busy.getsockname()[1])]) == 2
        err = capsys.readouterr().err
        assert "cannot listen" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow  # two worker processes start (each imports torch): up to a minute, 2 busy cores
def test_workers_reload_in_place_on_sighup_and_keep_serving_a_refused_run(runs, tmp_path):
    """With --workers 2 the supervisor passes SIGHUP on: each worker reloads in place (same
    processes, version 2), a refused run leaves every worker its model."""
    link = tmp_path / "current"
    link.symlink_to(runs["mf"])
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "negspace.cli", "serve", str(link), "--port",
                             str(port), "--workers", "2"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    lines: list[str] = []  # stderr, read as it comes: each worker says when it is up
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, b"")))
    reader.start()
    try:
        # a worker still loading ignores SIGHUP (it reads the run when it starts): wait for both
        wait_for(lambda: sum(b"Application startup complete" in x for x in lines) == 2,
                 "both workers", proc, 120)
        workers = set(children(proc.pid))
        assert len(workers) == 2
        assert call(port, "/reload", {})[0] == 403  # no token; and per-worker reloads are refused
        broken = tmp_path / "broken"
        broken.mkdir()
        nxt = tmp_path / "next"
        nxt.symlink_to(broken)
        os.replace(nxt, link)
        proc.send_signal(signal.SIGHUP)
        time.sleep(3)
        for _ in range(10):  # every answer still comes from the mf run
            status, body = call(port, "/model")
            assert status == 200 and body["model"] == "mf" and body["version"] == 1
        nxt.symlink_to(runs["cml"])
        os.replace(nxt, link)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: all(call(port, "/model")[1]["model"] == "cml" for _ in range(20)),
                 "every worker on the cml run", proc, 120)
        assert set(children(proc.pid)) == workers  # reloaded, not restarted
        assert {call(port, "/model")[1]["version"] for _ in range(10)} == {2}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
        reader.join(10)
        log = b"".join(lines).decode()
        assert log.count("SIGHUP reload refused") == 2 and "Traceback" not in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
