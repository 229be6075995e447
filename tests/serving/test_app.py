"""Every route of `negspace serve` and every error answer, through FastAPI's test client: answers
equal the CLI's and the Python API's, bad requests get 4xx JSON (never a traceback), the token
guards every route but /health, and reloads swap models or refuse broken run directories."""

import hashlib
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from negspace import NegspaceError, Recommender
from negspace.cli import main
from negspace.pipeline.rundir import code_commit
from negspace.serving.app import ServeSettings, create_app
from negspace.serving.holder import ModelHolder, load_model
from negspace.serving.schemas import Limits

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


ADMIN = "adm1n-token"
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}


def client(run: Path, faiss: bool = False, token: str | None = None,
           limits: Limits | None = None, root: Path | None = None,
           admin: str | None = None, **settings) -> TestClient:
    """A test client on `run`; Host is localhost (the test client's own name, testserver, is
    not a loopback name and is refused without a token)."""
    holder = ModelHolder(load_model(run, faiss), root=root)
    app = create_app(holder, ServeSettings(limits or Limits(), token, admin_token=admin,
                                           **settings))
    return TestClient(app, base_url="http://localhost")


def cli_json(capsys, *args: str) -> dict:
    assert main(["recommend", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def snapshot(folder: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.iterdir())}


def no_traceback(response) -> None:
    assert "Traceback" not in response.text and 'File "' not in response.text


@pytest.fixture(scope="module")
def mf(runs) -> TestClient:
    return client(runs["mf"])


def test_health_and_model(mf, runs):
    assert mf.get("/health").json() == {"status": "ok", "model_version": 1}
    info = mf.get("/model").json()
    rec = Recommender.load(runs["mf"], index=False)
    assert info["model"] == "mf" and info["measure"] == rec.measure == "dot"
    assert info["counts"] == {"users": rec.train.n_users, "items": rec.train.n_items,
                              "interactions": rec.train.nnz, "dim": 16}
    assert info["version"] == 1 and info["created"].endswith("+00:00")
    # the commit of the code that trained the run, recorded in its config.json
    assert info["commit"] == json.loads((runs["mf"] / "config.json").read_text())["commit"]
    assert info["commit"] == code_commit()
    assert info["index"] is None and info["two_tower"] is False


@pytest.mark.parametrize("user,k", [("u0", 10), ("u17", 3), ("u149", 52)])
def test_recommend_equals_the_cli(mf, runs, capsys, user, k):
    expected = cli_json(capsys, str(runs["mf"]), "--user", user, "-k", str(k))
    got = mf.post("/recommend", json={"users": [user], "k": k}).json()
    assert got["exact"] is True and got["model_version"] == 1
    (result,) = got["results"]
    assert result == {"user": user, "items": expected["items"], "scores": expected["scores"]}


def test_many_users_are_one_request_with_the_same_answers(mf, runs):
    users = ["u3", "u8", "u3", "u99"]
    batch = mf.post("/recommend", json={"users": users, "k": 5}).json()["results"]
    rec = Recommender.load(runs["mf"], index=False)
    for user, result in zip(users, batch):
        single = mf.post("/recommend", json={"users": [user], "k": 5}).json()["results"][0]
        assert result["items"] == single["items"]
        np.testing.assert_allclose(result["scores"], single["scores"], rtol=1e-5)
        frame = rec.recommend(user, k=5)
        assert result["items"] == frame.item.tolist()


def test_seen_exclude_and_candidates(mf, runs, frame):
    seen = set(frame[frame.user == "u5"].item)
    plain = mf.post("/recommend", json={"users": ["u5"], "k": 60}).json()["results"][0]
    assert not seen & set(plain["items"]) and len(plain["items"]) == 60 - len(seen)
    everything = mf.post("/recommend", json={"users": ["u5"], "k": 60,
                                             "exclude_seen": False}).json()["results"][0]
    assert set(everything["items"]) == set(range(60))
    top = plain["items"][0]
    without = mf.post("/recommend", json={"users": ["u5"], "k": 5, "exclude": [top]}).json()
    assert top not in without["results"][0]["items"] and without["exact"] is True
    cand = [top, plain["items"][3], sorted(seen)[0]]
    only = mf.post("/recommend", json={"users": ["u5"], "k": 5, "candidates": cand}).json()
    assert only["results"][0]["items"] == [top, plain["items"][3]]  # seen one filtered
    rec = Recommender.load(runs["mf"], index=False)
    expected = rec.recommend("u5", k=5, items=cand, exclude=[top])
    got = mf.post("/recommend", json={"users": ["u5"], "k": 5, "candidates": cand,
                                      "exclude": [top]}).json()["results"][0]
    assert got["items"] == expected.item.tolist()


def test_faiss_flat_index_gives_the_exact_answer(runs):
    app = client(runs["mf"], faiss=True)
    assert app.get("/model").json()["index"] == "flat"
    exact = client(runs["mf"])
    for user in ("u1", "u40"):
        a = app.post("/recommend", json={"users": [user], "k": 7}).json()
        b = exact.post("/recommend", json={"users": [user], "k": 7}).json()
        assert a["exact"] is False and b["exact"] is True
        assert a["results"][0]["items"] == b["results"][0]["items"]
        np.testing.assert_allclose(a["results"][0]["scores"], b["results"][0]["scores"], rtol=1e-5)


def test_new_user_fold_in_equals_the_python_api(mf, runs):
    rec = Recommender.load(runs["mf"], index=False)
    history = [3, 7, 11]
    expected = rec.recommend_new([history], k=6)
    got = mf.post("/recommend/new", json={"items": history, "k": 6}).json()
    assert got["items"] == expected.item.tolist() and not set(history) & set(got["items"])
    np.testing.assert_allclose(got["scores"], expected.score.to_numpy(), rtol=1e-5)
    assert mf.post("/recommend/new", json={"items": []}).status_code == 422
    r = mf.post("/recommend/new", json={"items": [3], "features": {"age": 3}})
    assert r.status_code == 422 and "two-tower" in r.json()["error"]
    r = mf.post("/recommend/new", json={"items": [3, 999, 1000]})
    assert r.status_code == 404 and r.json()["items"] == [999, 1000]


def test_two_tower_cold_start_equals_the_cli(runs, capsys, tmp_path):
    app = client(runs["tower"])
    assert app.get("/model").json()["user_features"] == ["age", "job"]
    user = {"features": {"age": 33, "job": "clerk"}, "items": [2, 9]}
    (tmp_path / "new.json").write_text(json.dumps(user))
    expected = cli_json(capsys, str(runs["tower"]), "--features", str(tmp_path / "new.json"),
                        "-k", "5")
    got = app.post("/recommend/new", json={**user, "k": 5}).json()
    assert got["items"] == expected["items"]
    np.testing.assert_allclose(got["scores"], expected["scores"], rtol=1e-5)
    other = app.post("/recommend/new", json={"features": {"age": 61, "job": "artist"},
                                             "k": 5}).json()  # features alone are enough
    assert len(other["items"]) == 5
    r = app.post("/recommend/new", json={"items": [2], "features": {"zip": "12345"}})
    assert r.status_code == 422 and "age, job" in r.json()["error"]
    # known users of a two-tower run are served from their stored vectors
    rec = Recommender.load(runs["tower"], index=False)
    known = app.post("/recommend", json={"users": ["u4"], "k": 4}).json()["results"][0]
    assert known["items"] == rec.recommend("u4", k=4).item.tolist()


def test_similar_items(mf, runs):
    rec = Recommender.load(runs["mf"], index=False)
    expected = rec.similar_items(5, k=4)
    got = mf.post("/similar", json={"item": 5, "k": 4}).json()
    assert got["items"] == expected.similar.tolist() and 5 not in got["items"]
    assert mf.post("/similar", json={"item": "5", "k": 4}).json()["items"] == got["items"]
    r = mf.post("/similar", json={"item": 12345})
    assert r.status_code == 404 and r.json()["items"] == [12345]


def test_unknown_users_are_named(mf):
    r = mf.post("/recommend", json={"users": ["u1", "nobody", 77, "u2"], "k": 3})
    assert r.status_code == 404
    assert r.json() == {"error": "unknown user id(s)", "users": ["nobody", 77], "count": 2}
    r = mf.post("/recommend", json={"users": ["u1"], "exclude": [1, 500]})
    assert r.status_code == 404 and r.json()["items"] == [500]
    r = mf.post("/recommend", json={"users": ["u1"], "candidates": ["x"]})
    assert r.status_code == 404 and r.json()["items"] == ["x"]


@pytest.mark.parametrize("body,status", [
    (b"{not json", 400),
    (b"", 422),
    (b"[1, 2]", 422),
    (b'{"users": "u1"}', 422),
    (b'{"users": []}', 422),
    (b'{"users": ["u1"], "k": "5"}', 422),
    (b'{"users": ["u1"], "k": 0}', 422),
    (b'{"users": ["u1"], "k": 1001}', 422),
    (b'{"users": ["u1"], "k": 1e400}', 422),
    (b'{"users": [true]}', 422),
    (b'{"users": [1.5]}', 422),
    (b'{"users": [null]}', 422),
    (b'{"users": [["u1"]]}', 422),
    (b'{"users": ["u1"], "exclude_seen": "no"}', 422),
    (b'{"users": ["u1"], "user": "typo"}', 422),
    (b'{"users": ["u1"], "k": 99999999999999999999999}', 422),
])
def test_malformed_requests_get_4xx_json(mf, body, status):
    r = mf.post("/recommend", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert "error" in r.json()
    no_traceback(r)


def test_limits_on_users_and_body_size(runs):
    app = client(runs["mf"], limits=Limits(max_users=3, max_k=20, max_body_bytes=400))
    assert app.post("/recommend", json={"users": ["u1"] * 4}).status_code == 422
    assert app.post("/recommend", json={"users": ["u1"], "k": 21}).status_code == 422
    assert app.post("/recommend", json={"users": ["u1"] * 3, "k": 20}).status_code == 200
    big = json.dumps({"users": ["u1"], "exclude": list(range(200))}).encode()
    assert app.post("/recommend", content=big,
                    headers={"Content-Type": "application/json"}).status_code == 413

    def chunks():  # no Content-Length: the body is counted as it arrives
        for _ in range(10):
            yield b" " * 100
    r = app.post("/recommend", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "error" in r.json()
    r = app.post("/recommend", content=b"{}", headers={"Content-Length": "abc"})
    assert r.status_code == 400


def test_unknown_routes_and_methods(mf):
    assert mf.get("/nope").status_code == 404 and mf.get("/nope").json() == {"error": "Not Found"}
    assert mf.get("/recommend").status_code == 405
    assert mf.delete("/model").status_code == 405
    assert mf.get("/docs").status_code == 404  # no interactive docs on a service


def test_token_guards_every_route_but_health(runs):
    app = client(runs["mf"], token=TOKEN)
    assert app.get("/health").status_code == 200
    for method, path, body in [("get", "/model", None), ("get", "/metrics", None),
                               ("post", "/recommend", {"users": ["u1"]}),
                               ("post", "/recommend/new", {"items": [1]}),
                               ("post", "/similar", {"item": 1}), ("post", "/reload", None),
                               ("get", "/nope", None)]:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                        {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": f"Bearer {TOKEN}x"}):
            r = getattr(app, method)(path, headers=headers, **({"json": body} if body else {}))
            assert r.status_code == 401, (path, headers)
            assert r.headers["www-authenticate"] == "Bearer"
    assert app.post("/recommend", json={"users": ["u1"]}, headers=AUTH).status_code == 200
    assert app.get("/metrics", headers=AUTH).status_code == 200


def test_metrics_count_requests_by_route_and_status(runs):
    app = client(runs["mf"])
    app.post("/recommend", json={"users": ["u1"]})
    app.post("/recommend", json={"users": ["nobody"]})
    app.get("/some/fuzzed/path")
    text = app.get("/metrics").text
    assert 'negspace_requests_total{route="/recommend",status="200"} 1.0' in text
    assert 'negspace_requests_total{route="/recommend",status="404"} 1.0' in text
    assert 'negspace_requests_total{route="other",status="404"} 1.0' in text
    assert 'negspace_request_seconds_bucket{le="0.001",route="/recommend"}' in text
    assert "negspace_model_version 1.0" in text
    assert app.get("/metrics").headers["content-type"].startswith("text/plain")


def model_root(runs, tmp_path: Path) -> Path:
    """A model root holding the mf and cml runs (as links, as an operator might)."""
    root = tmp_path / "models"
    root.mkdir()
    for name in ("mf", "cml"):
        (root / name).symlink_to(runs[name])
    return root


def top_items(run: Path, users: list, k: int) -> list[list]:
    rec = Recommender.load(run, index=False)
    return [rec.recommend(u, k=k).item.tolist() for u in users]


def test_reload_swaps_and_refuses_broken_runs(runs, tmp_path):
    """Named reloads load runs under the model root with the admin token; a POST without a name
    (like SIGHUP) reloads the command-line run, even after a named reload (failed before: the
    named run had become the source)."""
    before = {name: snapshot(path) for name, path in runs.items()}
    root = model_root(runs, tmp_path)
    off = client(runs["mf"], token=TOKEN, root=root)  # no admin token: reloads over HTTP off
    assert off.post("/reload", json={"run_dir": "cml"}, headers=AUTH).status_code == 403
    app = client(runs["mf"], token=TOKEN, root=root, admin=ADMIN)
    r = app.post("/reload", json={"run_dir": "cml"}, headers=AUTH)
    assert r.status_code == 401  # the inference token is not the admin token
    mf_top, cml_top = top_items(runs["mf"], ["u2"], 4), top_items(runs["cml"], ["u2"], 4)
    assert mf_top != cml_top
    ask = {"users": ["u2"], "k": 4}
    got = app.post("/recommend", json=ask, headers=AUTH).json()
    assert got["model_version"] == 1 and [x["items"] for x in got["results"]] == mf_top
    r = app.post("/reload", json={"run_dir": "cml"}, headers=ADMIN_AUTH)
    assert r.status_code == 200 and r.json() == {"model_version": 2, "run_dir": "cml"}
    info = app.get("/model", headers=AUTH).json()
    assert info["model"] == "cml" and info["version"] == 2
    got = app.post("/recommend", json=ask, headers=AUTH).json()
    assert got["model_version"] == 2 and [x["items"] for x in got["results"]] == cml_top

    unfinished = root / "unfinished"
    shutil.copytree(runs["mf"], unfinished)
    (unfinished / "metrics.json").unlink()
    truncated = root / "truncated"
    shutil.copytree(runs["mf"], truncated)
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    mismatched = root / "mismatched"
    shutil.copytree(runs["mf"], mismatched)
    ids = json.loads((mismatched / "ids.json").read_text())
    (mismatched / "ids.json").write_text(json.dumps({**ids, "items": ids["items"][:-1]}))
    for name, status in [("unfinished", 422), ("truncated", 422), ("mismatched", 422),
                         ("missing", 404)]:
        r = app.post("/reload", json={"run_dir": name}, headers=ADMIN_AUTH)
        assert r.status_code == status and r.json()["model_version"] == 2, r.text
        assert ("reload refused" if status == 422 else name) in r.json()["error"]
        assert str(tmp_path) not in r.text and str(runs["mf"]) not in r.text  # no paths
        no_traceback(r)
        assert app.get("/health").json()["model_version"] == 2
    r = app.post("/reload", headers=ADMIN_AUTH)  # no name: the command-line run, mf
    assert r.status_code == 200 and r.json()["model_version"] == 3
    got = app.post("/recommend", json=ask, headers=AUTH).json()
    assert got["model_version"] == 3 and [x["items"] for x in got["results"]] == mf_top
    text = app.get("/metrics", headers=AUTH).text
    assert 'negspace_reloads_total{result="ok"} 2.0' in text
    assert 'negspace_reloads_total{result="refused"} 5.0' in text  # the 401 counts too
    after = {name: snapshot(path) for name, path in runs.items()}
    assert after == before  # serving never writes a run directory


@pytest.mark.parametrize("name", ["../mf", "mf/../cml", "/etc", ".", "..", ".hidden", "a\x00b",
                                  "x" * 256, "a//b", "a\\b", "mf/", ""])
def test_reload_names_stay_under_the_model_root(runs, tmp_path, name):
    """Absolute, dotted, NUL-bearing or over-long names get a 4xx JSON answer without paths, and
    count as refused reloads (a 256-character name and a NUL were a 500 before, uncounted)."""
    app = client(runs["mf"], root=model_root(runs, tmp_path), admin=ADMIN)
    r = app.post("/reload", json={"run_dir": name}, headers=ADMIN_AUTH)
    assert 400 <= r.status_code < 500 and "error" in r.json(), r.text
    assert str(tmp_path) not in r.text and "/etc" not in r.text.replace('"/etc"', "")
    no_traceback(r)
    assert 'negspace_reloads_total{result="refused"} 1.0' in app.get("/metrics").text
    assert app.get("/health").json()["model_version"] == 1


def test_load_model_refuses_bad_paths_in_one_error(runs, tmp_path):
    """ENAMETOOLONG and a NUL byte were raised as OSError / ValueError, a 500 over HTTP."""
    listed = tmp_path / "listed"  # metrics.json a JSON list: AttributeError, a 500, before
    shutil.copytree(runs["mf"], listed)
    (listed / "metrics.json").write_text("[1]")
    for path in (tmp_path / ("x" * 300), str(tmp_path) + "/a\x00b", tmp_path / "missing",
                 listed):
        with pytest.raises(NegspaceError):
            load_model(path)
    holder = ModelHolder(load_model(runs["mf"]), root=tmp_path)
    for name in ("x" * 300, "a\x00b", "../x", "/abs"):
        with pytest.raises(NegspaceError):
            holder.reload(name)
    assert holder.reloads == {"ok": 0, "refused": 4}


def test_sighup_reloads_the_command_line_run_after_a_named_reload(runs, tmp_path):
    """holder.reload() is what SIGHUP calls: it reads the source given at start, not the last
    named run (before, a named reload replaced the source)."""
    holder = ModelHolder(load_model(runs["mf"]), runs["mf"], root=model_root(runs, tmp_path))
    assert holder.reload("cml").rec.config.to_dict()["model"] == "cml"
    assert holder.reload().rec.config.to_dict()["model"] == "mf"
    assert holder.source == runs["mf"]


def test_requests_during_reloads_all_succeed(runs, tmp_path, monkeypatch):
    """Six reloads alternate mf and cml while requests go on: each reload waits until a request
    was answered while it loaded (so requests provably overlap reloads), every answer is a 200
    whose items are those of the model version it names (never a mix), and an assert failing in
    the reloading thread fails the test instead of hanging it."""
    import negspace.serving.holder as holder_module

    app = client(runs["mf"], token=TOKEN, root=model_root(runs, tmp_path), admin=ADMIN)
    users = ["u1", "u2"]
    expected = {"mf": top_items(runs["mf"], users, 5), "cml": top_items(runs["cml"], users, 5)}
    loading, answered_meanwhile = threading.Event(), threading.Event()
    real_load = holder_module.load_model

    def slow_load(*args, **kwargs):
        loading.set()
        try:
            assert answered_meanwhile.wait(30), "no request answered during the reload"
            return real_load(*args, **kwargs)
        finally:
            answered_meanwhile.clear()
            loading.clear()
    monkeypatch.setattr(holder_module, "load_model", slow_load)
    errors: list[BaseException] = []

    def reloads() -> None:
        try:
            for i in range(6):
                name = "cml" if i % 2 == 0 else "mf"
                r = app.post("/reload", json={"run_dir": name}, headers=ADMIN_AUTH)
                assert r.status_code == 200, r.text
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    thread = threading.Thread(target=reloads, daemon=True)
    thread.start()
    answered, overlapped, deadline = 0, 0, time.monotonic() + 120
    while (thread.is_alive() or answered < 20) and time.monotonic() < deadline:
        during = loading.is_set()
        r = app.post("/recommend", json={"users": users, "k": 5}, headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        model = "mf" if body["model_version"] % 2 == 1 else "cml"
        assert [x["items"] for x in body["results"]] == expected[model], body["model_version"]
        answered += 1
        if during and loading.is_set():
            overlapped += 1
            answered_meanwhile.set()
    thread.join(10)
    assert not thread.is_alive(), "the reloading thread hung"
    if errors:
        raise errors[0]
    assert overlapped >= 6 and app.get("/health").json()["model_version"] == 7


def test_an_unexpected_failure_is_a_json_500_without_traceback(runs, monkeypatch):
    app = client(runs["mf"])
    rec = app.app.state.holder.current.rec

    def broken(*args, **kwargs):
        raise RuntimeError("boom at /secret/path.py line 3")
    monkeypatch.setattr(rec, "rank_vectors", broken)
    r = TestClient(app.app, raise_server_exceptions=False, base_url="http://localhost").post(
        "/recommend", json={"users": ["u1"]})
    assert r.status_code == 500 and r.json() == {"error": "internal server error"}
    no_traceback(r)
    assert "secret" not in r.text
    assert app.get("/health").status_code == 200


def test_a_body_is_json_whatever_its_content_type_with_a_token(runs):
    app = client(runs["mf"], token=TOKEN)
    body = json.dumps({"users": ["u1"], "k": 2}).encode()
    for ctype in ("application/x-www-form-urlencoded", "text/plain", None):
        headers = {"Content-Type": ctype} if ctype else {}
        r = app.post("/recommend", content=body, headers={**headers, **AUTH})
        assert r.status_code == 200 and len(r.json()["results"][0]["items"]) == 2, ctype


def test_without_a_token_only_json_bodies_and_loopback_hosts(mf):
    """A browser page can POST text/plain without a preflight, and DNS rebinding sends its own
    Host: without a token both are refused (before, both were served)."""
    body = json.dumps({"users": ["u1"], "k": 2}).encode()
    for ctype in ("application/x-www-form-urlencoded", "text/plain", None):
        headers = {"Content-Type": ctype} if ctype else {}
        r = mf.post("/recommend", content=body, headers=headers)
        assert r.status_code == 415 and "error" in r.json(), ctype
    ok = mf.post("/recommend", content=body,
                 headers={"Content-Type": "application/json; charset=utf-8"})
    assert ok.status_code == 200
    for host in ("localhost:8000", "127.0.0.1", "[::1]:80", "LOCALHOST"):
        assert mf.get("/health", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "testserver"):
        r = mf.get("/model", headers={"Host": host})
        assert r.status_code == 400 and "Host" in r.json()["error"], host


def test_allowed_hosts_and_a_token_lift_the_host_check(runs):
    named = client(runs["mf"], allowed_hosts=("api.example",))
    assert named.get("/health", headers={"Host": "api.example:80"}).status_code == 200
    assert named.get("/health", headers={"Host": "localhost"}).status_code == 400
    guarded = client(runs["mf"], token=TOKEN)
    assert guarded.get("/model", headers={"Host": "api.example", **AUTH}).status_code == 200


def test_a_full_server_answers_503_with_retry_after(runs):
    app = client(runs["mf"], max_inflight=0)  # every request finds the server full
    r = app.post("/recommend", json={"users": ["u1"]})
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and "error" in r.json()
    assert app.get("/health").status_code == 200 and app.get("/metrics").status_code == 200


def test_a_request_in_flight_finishes_on_the_model_it_started_with(runs):
    """A new user's fold-in runs off the event loop; a reload completing meanwhile must not
    change the model that answers it."""
    app = client(runs["mf"], token=TOKEN, root=runs["mf"].parent, admin=ADMIN)
    old = app.app.state.holder.current
    started, swapped = threading.Event(), threading.Event()
    fold_in = old.rec.new_user_vectors

    def slow(*args, **kwargs):
        started.set()
        assert swapped.wait(60)
        return fold_in(*args, **kwargs)
    object.__setattr__(old.rec, "new_user_vectors", slow)
    answers = {}
    thread = threading.Thread(target=lambda: answers.update(
        r=app.post("/recommend/new", json={"items": [3, 7], "k": 5}, headers=AUTH)))
    with app:  # one event loop for both requests
        thread.start()
        assert started.wait(60)
        r = app.post("/reload", json={"run_dir": "cml"}, headers=ADMIN_AUTH)
        assert r.status_code == 200 and r.json()["model_version"] == 2
        swapped.set()
        thread.join(60)
    got = answers["r"].json()
    assert got["model_version"] == 1
    expected = Recommender.load(runs["mf"]).recommend_new([[3, 7]], k=5)
    assert got["items"] == expected.item.tolist()
    assert app.get("/health").json()["model_version"] == 2


def _json_values():
    from hypothesis import strategies as st
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.sampled_from(["users", "k", "items", "item",
                                                           "exclude", "candidates", "features",
                                                           "exclude_seen", "x"]), inner,
                                          max_size=5), max_leaves=20)


def test_fuzzed_bodies_never_get_a_5xx(mf):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(path=st.sampled_from(["/recommend", "/recommend/new", "/similar", "/reload"]),
           body=st.binary(max_size=200) | _json_values().map(lambda v: json.dumps(v).encode()))
    def check(path, body):
        r = mf.post(path, content=body)
        assert r.status_code < 500, (path, body, r.text)
        assert r.status_code == 200 or "error" in r.json()
        no_traceback(r)

    check()
    assert mf.get("/health").status_code == 200


def test_openapi_is_published_and_true_to_the_answers(runs):
    """/openapi.json (404 before) documents every status a route answers with the JSON error
    shape, /metrics as text, and what the served model accepts; /docs stays off."""
    schema = client(runs["mf"]).get("/openapi.json").json()
    paths = schema["paths"]
    assert set(paths) == {"/health", "/model", "/recommend", "/recommend/new", "/similar",
                          "/metrics", "/reload"}
    error = {"$ref": "#/components/schemas/ErrorAnswer"}
    for path, codes in [("/recommend", {"200", "400", "404", "413", "415", "422", "503"}),
                        ("/reload", {"200", "400", "403", "404", "409", "413", "422", "503"})]:
        responses = paths[path]["post"]["responses"]
        assert codes <= set(responses), (path, set(responses))
        for code in codes - {"200"}:
            assert responses[code]["content"]["application/json"]["schema"] == error
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
    parts = schema["components"]["schemas"]
    k = parts["RecommendRequest"]["properties"]["k"]
    assert k["minimum"] == 1 and k["maximum"] == 1000  # JSON Schema words, not pydantic's ge/le
    new_user = parts["NewUserRequest"]  # a fold-in model: items needed, no features
    assert new_user["properties"]["items"]["minItems"] == 1
    assert "features" not in new_user["properties"] and "items" in new_user["required"]
    assert "securitySchemes" not in schema["components"]
    tower = client(runs["tower"], token=TOKEN, admin=ADMIN).get("/openapi.json", headers=AUTH)
    schema = tower.json()
    features = schema["components"]["schemas"]["NewUserRequest"]["properties"]["features"]
    assert set(features["anyOf"][0]["properties"]) == {"age", "job"}
    assert schema["paths"]["/model"]["get"]["security"] == [{"bearer": []}]
    assert schema["paths"]["/reload"]["post"]["security"] == [{"admin": []}]
    assert schema["paths"]["/health"]["get"]["security"] == []
    mf = client(runs["mf"])
    r = mf.post("/recommend", json={"users": ["u1"], "k": 3.0})  # an integer to JSON Schema
    assert r.status_code == 200 and len(r.json()["results"][0]["items"]) == 3
    assert mf.post("/recommend", json={"users": ["u1"], "k": 3.5}).status_code == 422
    r = mf.post("/recommend", json={"users": ["u1"], "k": 0})
    assert r.status_code == 422 and set(r.json()) == {"error", "detail"}
    assert mf.get("/docs").status_code == 404
