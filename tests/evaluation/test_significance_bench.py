"""bench/significance.py: per-user values kept and reused, pairs compared, unpaired runs refused."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench():
    from bench import significance
    return significance


@pytest.fixture
def csv(tmp_path):
    """120 users in 4 taste groups of 15 items each, 8 plays a user."""
    rng = np.random.default_rng(0)
    rows = ["user,item"]
    for u in range(120):
        rows += [f"u{u},i{i + 15 * (u % 4)}" for i in rng.permutation(15)[:8]]
    path = tmp_path / "groups.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_compares_pairs_then_reuses_the_kept_values(bench, csv, tmp_path, capsys, monkeypatch):
    out = tmp_path / "sig"
    args = ["--dataset", str(csv), "--method", "default", "--method", "ease=10",
            "--metrics", "map@50", "hit@20", "--resamples", "500", "--threads", "1",
            "--out", str(out)]
    bench.main(args)
    first = capsys.readouterr().out
    assert "default: training" in first and "ease: training" in first
    pairs = [line for line in first.splitlines() if " vs " in line]
    assert len(pairs) == 2 and all("p " in line for line in pairs)
    kept = sorted(p.name for p in (out / csv.name).glob("*.npz"))
    assert len(kept) == 2 and kept[0].startswith("default-") and kept[1].startswith("ease-")
    saved = np.load(out / csv.name / kept[1])
    assert len(saved["users"]) == len(saved["map@50"]) > 0

    def untrained(*_):
        raise AssertionError("trained again")
    monkeypatch.setattr(bench, "per_user", untrained)
    bench.main(args)
    again = capsys.readouterr().out
    assert "training" not in again
    assert [line for line in again.splitlines() if " vs " in line] == pairs


def test_refuses_methods_on_another_split(bench, csv, tmp_path, monkeypatch):
    out = tmp_path / "sig"
    bench.main(["--dataset", str(csv), "--method", "ease=10", "--method", "ease=100",
                "--resamples", "100", "--out", str(out)])
    folder = out / csv.name
    path = sorted(folder.glob("ease-*.npz"))[0]
    saved = dict(np.load(path))
    saved["split"] = np.array("another")
    np.savez(path, **saved)
    with pytest.raises(SystemExit, match="another split"):
        bench.main(["--dataset", str(csv), "--method", "ease=10", "--method", "ease=100",
                    "--out", str(out)])


@pytest.mark.parametrize("methods, message", [
    (["--method", "nope"], "unknown method"),
    (["--method", "default=1", "--method", "ease=1"], "default takes no value"),
    (["--method", "default"], "two methods"),
])
def test_bad_methods_are_one_line_errors(bench, csv, methods, message):
    with pytest.raises(SystemExit, match=message):
        bench.main(["--dataset", str(csv), *methods])
