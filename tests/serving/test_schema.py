"""schemathesis, a third-party OpenAPI fuzzer, against a live `negspace serve`: every check (no
5xx, answers true to /openapi.json in status, shape, content type and headers; valid requests
accepted, invalid ones refused; the token enforced) over a few hundred requests, without a token
(a fold-in model) and with one (a two-tower model, and POST /reload with its admin token)."""

import json
import re
import subprocess
import sys
import urllib.request

import pytest

from tests.serving.test_app import ADMIN, TOKEN
from tests.serving.test_server import Server, call, wait_for

pytest.importorskip("schemathesis")
pytestmark = pytest.mark.slow  # three fuzzing runs of about a minute each


def fuzz(where, location: str, *options: str) -> int:
    """Runs schemathesis in the folder `where` (its example database goes there); returns the
    number of test cases, after asserting none failed."""
    done = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", location, "--checks", "all",
         "--max-examples", "60", "--seed", "1", "--no-color", *options],
        capture_output=True, text=True, timeout=400, cwd=where)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", out)
    assert cases and cases.group(1) == cases.group(2), out[-3000:]
    return int(cases.group(1))


def test_schemathesis_finds_nothing_without_a_token(runs, tmp_path):
    server = Server(str(runs["mf"]))
    try:
        wait_for(lambda: call(server.port, "/health")[0] == 200, "startup", server)
        cases = fuzz(tmp_path, f"http://127.0.0.1:{server.port}/openapi.json")
        assert cases >= 300, cases
        assert "Traceback" not in server.log
    finally:
        server.stop()


def test_schemathesis_finds_nothing_with_tokens(runs, tmp_path):
    (tmp_path / "token").write_text(TOKEN)
    (tmp_path / "admin").write_text(ADMIN)
    root = tmp_path / "models"
    root.mkdir()
    (root / "mf").symlink_to(runs["mf"])
    server = Server(str(runs["tower"]), "--token-file", str(tmp_path / "token"),
                    "--admin-token-file", str(tmp_path / "admin"), "--model-root", str(root))
    port = server.port
    try:
        wait_for(lambda: call(port, "/health")[0] == 200, "startup", server)
        cases = fuzz(tmp_path, f"http://127.0.0.1:{port}/openapi.json", "-H",
                     f"Authorization: Bearer {TOKEN}")
        # POST /reload takes the admin token, which does not open the schema: read it first
        request = urllib.request.Request(f"http://127.0.0.1:{port}/openapi.json",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as r:
            schema = json.loads(r.read())
        assert schema["paths"]["/reload"]["post"]["security"] == [{"admin": []}]
        (tmp_path / "schema.json").write_text(json.dumps(schema))
        cases += fuzz(tmp_path, str(tmp_path / "schema.json"), "--url",
                      f"http://127.0.0.1:{port}", "--include-path", "/reload", "-H",
                      f"Authorization: Bearer {ADMIN}")
        assert cases >= 300, cases
        assert "Traceback" not in server.log
    finally:
        server.stop()
