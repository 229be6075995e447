"""docs/results.md is generated from bench/records/*.jsonl: it is up to date, and the report
renders any record in the shared format (new sections and datasets, optional keys left out)."""

import json

import pytest

from bench import harness, report


def test_results_md_is_what_the_committed_records_render(tmp_path):
    out = tmp_path / "results.md"
    assert report.main(["--out", str(out)]) == 0
    assert out.read_text() == report.OUT.read_text(), "docs/results.md is stale: run make results"
    assert report.main(["--check"]) == 0


def _write(folder, *records):
    folder.mkdir(exist_ok=True)
    (folder / "gowalla.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


BASE = {"section": "accuracy", "dataset": "gowalla-lightgcn", "command": "negspace train --dataset gowalla-lightgcn",
        "date": "2026-12-07", "machine": "2-core x86_64"}


def test_any_record_renders_grouped_by_section_and_dataset(tmp_path):
    _write(tmp_path / "rec",
           {**BASE, "id": "a", "method": "negspace default", "metrics": {"recall@20": 0.1801, "ndcg@20": 0.149}},
           {**BASE, "id": "b", "method": "ALS 256", "metrics": {"recall@20": 0.17, "ndcg@20": 0.14},
            "train_s": 12.5, "load": "quiet", "note": "a | pipe"},
           {**BASE, "id": "c", "method": "EASE", "metrics": {"recall@20": 0.19}, "protocol": "validation-chosen, test read once"},
           {**BASE, "id": "d", "method": "negspace recipe", "metrics": {"recall@20": 0.2},
            "protocol": "epoch chosen on test (published protocol)", "section": "published-protocol"},
           {**BASE, "id": "e", "method": "sampler draw", "metrics": {"ms": 1.5, "ms std": 0.25}, "section": "new-topic",
            "dataset": "synthetic"})
    out = tmp_path / "results.md"
    assert report.main(["--records", str(tmp_path / "rec"), "--out", str(out)]) == 0
    text = out.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| gowalla-lightgcn |"))
    # default, no recipe, ALS, no WARP, EASE (best, bold), no GF-CF, the published-protocol
    # figure labelled
    assert "0.1801 / 0.1490" in row and "0.1700 / 0.1400 (12.5 s)" in row and "**0.1900 / -**" in row
    assert row.count("| - |") == 3 and "negspace recipe 0.2000" in row
    assert text.index("## Accuracy") < text.index("## Published protocol") < text.index("## new-topic")
    assert "a \\| pipe" in text and "`negspace train --dataset gowalla-lightgcn`" in text
    assert "### synthetic" in text and "| ms 1.5 +- 0.2500 |" in text


def test_paired_tests_are_summed_up_under_the_summary(tmp_path):
    tests = [{**BASE, "id": f"s{i}", "section": "significance",
              "method": f"negspace default vs ALS tuned, metric {i}",
              "metrics": {"p_value": p, "test_users": 1294}} for i, p in enumerate((0.03, 0.4, 0.9))]
    # a test between two settings of one method is not a comparison of the summary's columns
    other = {**BASE, "id": "s9", "section": "significance", "method": "fold-back vs refit, m",
             "metrics": {"p_value": 0.001, "test_users": 1294}}
    _write(tmp_path / "rec", {**BASE, "id": "a", "method": "negspace default",
                              "metrics": {"recall@20": 0.18}}, *tests, other)
    out = tmp_path / "results.md"
    assert report.main(["--records", str(tmp_path / "rec"), "--out", str(out)]) == 0
    text = out.read_text()
    line = next(x for x in text.splitlines() if x.startswith("Paired tests on gowalla-lightgcn"))
    assert "3 comparisons" in line and "1294 test users" in line
    assert "1 significant at the 5% level (p 0.03 to 0.90)" in line
    assert text.index(line) < text.index("## Accuracy") < text.index("## Significance")


@pytest.mark.parametrize("bad, message", [
    ({"command": "negspace train --data-dir /" + "home/me/data"}, "absolute machine path"),
    ({"date": None}, "missing date")])
def test_a_bad_record_is_a_one_line_error(tmp_path, capsys, bad, message):
    rec = {**BASE, "id": "a", "method": "m", "metrics": {"x": 1}, **bad}
    _write(tmp_path / "rec", {k: v for k, v in rec.items() if v is not None})
    assert report.main(["--records", str(tmp_path / "rec"), "--out", str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_harness_records_what_the_report_reads(tmp_path):
    rec = harness.record("speed", folder=tmp_path, id="x", section="speed", dataset="synthetic",
                         method="draw", metrics={"ms": 2.0}, command="python bench/samplers.py --check")
    assert harness.read_records(tmp_path) == [{**rec, "topic": "speed"}]
    assert rec["machine"].startswith(f"{harness.machine_info()['cores']}-core") and rec["load"]
    with pytest.raises(ValueError, match="absolute"):
        harness.record("speed", folder=tmp_path, **{**rec, "command": "x --out /" + "tmp/run"})


def test_commands_are_recorded_path_free(monkeypatch, tmp_path):
    monkeypatch.setenv("NEGSPACE_DATA", str(tmp_path / "data"))
    line = harness.command([str(harness.ROOT / "bench" / "scale.py"), "--csv", str(tmp_path / "data" / "x.csv"),
                            "--out", str(harness.ROOT / "runs" / "a b"), "--cases", "cml uniform"])
    assert line == "python bench/scale.py --csv $NEGSPACE_DATA/x.csv --out 'runs/a b' --cases 'cml uniform'"
    assert not harness.check({"id": "x", "section": "s", "dataset": "d", "method": "m", "metrics": {},
                              "command": line, "date": "2026-12-07", "machine": "m"})
