"""docs/results.md from the committed records bench/records/*.jsonl (`make results`).

    python -m bench.report [--records DIR] [--out FILE] [--check]

First a one-screen summary: per dataset, the best test result of each of negspace's default,
negspace's recipe, ALS, WARP and EASE under the validation protocol, and the published-protocol
figures, labelled as such. Then one section per topic and, inside it, one table per dataset
with every record: its metrics, command, date, machine and load. Any record in the shared
format renders; sections the report does not know follow the known ones. Standard library only.
`--check` renders to memory and exits 1 when FILE differs (what the tests run).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

try:
    from bench.harness import RECORDS, ROOT, read_records
except ImportError:  # run as a script: python bench/report.py
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from harness import RECORDS, ROOT, read_records

OUT = ROOT / "docs" / "results.md"
SECTIONS = {"summary": "Headline results", "accuracy": "Accuracy: defaults, recipes and tuned peers",
            "published-protocol": "Published protocol (epoch chosen on test; for comparison with papers only)",
            "peers": "Peers at their issue-6 settings, and negspace's other models",
            "samplers": "Negative samplers for CML (the grid of Tran et al., SIGIR 2019)",
            "schedule": "Schedules", "speed": "Speed", "scale": "Scale and distributed training",
            "serving": "Serving", "gpu": "GPU",
            "significance": "Significance: paired tests over test users"}
# summary columns: (title, does a record's method belong to it)
COLUMNS = [("negspace default", lambda m: m == "negspace default"),
           ("negspace recipe", lambda m: m == "negspace recipe"),
           ("ALS", lambda m: m.startswith("ALS")), ("WARP", lambda m: m.startswith("WARP")),
           ("EASE", lambda m: m.startswith("EASE")), ("GF-CF", lambda m: m.startswith("GF-CF"))]
SUMMARY_SECTIONS = ("summary", "accuracy", "peers")


def number(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return f"{int(v):,}" if abs(v) >= 10_000 else str(int(v))
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10_000 else str(v)
    # metrics keep four decimals as measured (0.2680, not 0.268); longer ones as written
    return f"{v:.4f}" if 0.001 <= abs(v) < 1 and round(v, 4) == v else repr(v)


def seconds(v: Any) -> str:
    return str(int(v)) if isinstance(v, (int, float)) and float(v).is_integer() else str(v)


def cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def metrics_text(metrics: dict[str, Any]) -> str:
    """'k v' pairs; a key's spread, stored as 'k std', follows its value as '+- s'."""
    return ", ".join(f"{k} {number(v)}" + (f" +- {number(metrics[k + ' std'])}" if k + " std" in metrics else "")
                     for k, v in metrics.items() if not (k.endswith(" std") and k[:-4] in metrics))


def validated(rec: dict[str, Any]) -> bool:
    """Chosen on validation with the test read once (records that say nothing count as such)."""
    protocol = rec.get("protocol", "")
    return not protocol or protocol.startswith("validation-chosen")


def ordered(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def summary(records: list[dict[str, Any]]) -> list[str]:
    eligible = [r for r in records if r["section"] in SUMMARY_SECTIONS and validated(r)]
    published = [r for r in records if r["section"] == "published-protocol"]
    datasets = ordered([r["dataset"] for r in eligible])
    lines = ["| dataset | metrics | " + " | ".join(t for t, _ in COLUMNS)
             + " | published protocol (epoch chosen on test) |",
             "|---" * (len(COLUMNS) + 3) + "|"]
    for ds in datasets:
        rows = [r for r in eligible if r["dataset"] == ds]
        # the metrics of the first record in a column (e.g. the default's), else of the first
        lead = next((r for r in rows if any(belongs(r["method"]) for _, belongs in COLUMNS)), rows[0])
        keys = list(lead["metrics"])[:2]
        best = {}
        for title, belongs in COLUMNS:
            mine = [r for r in rows if belongs(r["method"]) and keys[0] in r["metrics"]]
            if mine:
                best[title] = max(mine, key=lambda r: r["metrics"][keys[0]])
        top = max((r["metrics"][keys[0]] for r in best.values()), default=None)
        cells = []
        for title, _ in COLUMNS:
            r = best.get(title)
            if r is None:
                cells.append("-")
                continue
            text = " / ".join(number(r["metrics"][k]) if k in r["metrics"] else "-" for k in keys)
            text = f"**{text}**" if r["metrics"][keys[0]] == top else text
            cells.append(text + (f" ({seconds(r['train_s'])} s)" if "train_s" in r else ""))
        pub = [r for r in published if r["dataset"] == ds and keys[0] in r["metrics"]]
        ours = [r for r in pub if r["method"].startswith("negspace")]
        shown = ([max(ours, key=lambda r: r["metrics"][keys[0]])] if ours else []) + \
            [r for r in pub if not r["method"].startswith("negspace")]
        pub_text = "; ".join(f"{r['method']} {number(r['metrics'][keys[0]])}" for r in shown) or "-"
        lines.append(f"| {cell(ds)} | {' / '.join(keys)} | " + " | ".join(map(cell, cells))
                     + f" | {cell(pub_text)} |")
    return lines


def significance_summary(records: list[dict[str, Any]]) -> list[str]:
    """One line per dataset with paired tests (bench/significance.py): how many of its
    comparisons between summary columns are significant at the 5% level, and the range of their
    p-values (other paired tests, such as two settings of one method, stay in their section)."""
    def between_columns(method: str) -> bool:
        pair = method.split(",")[0].split(" vs ")
        return len(pair) == 2 and all(any(f(m) for _, f in COLUMNS) for m in pair)
    tests = [r for r in records if r["section"] == "significance" and "p_value" in r["metrics"]
             and between_columns(r["method"])]
    lines = []
    for ds in ordered([r["dataset"] for r in tests]):
        mine = [r for r in tests if r["dataset"] == ds]
        p = [r["metrics"]["p_value"] for r in mine]
        significant = sum(v < 0.05 for v in p)
        lines.append(f"Paired tests on {ds} ({len(p)} comparisons of the methods above over "
                     f"{mine[0]['metrics'].get('test_users', '?')} test users, section "
                     f"{SECTIONS['significance']!r}): {significant or 'none'} significant at the "
                     f"5% level (p {min(p):.2f} to {max(p):.2f}).")
    return lines + ([""] if lines else [])


def section(records: list[dict[str, Any]]) -> list[str]:
    lines = []
    for ds in ordered([r["dataset"] for r in records]):
        lines += [f"### {ds}", "", "| method | metrics | train s | protocol | date | machine, load "
                  "| command | note |", "|---|---|---|---|---|---|---|---|"]
        for r in (r for r in records if r["dataset"] == ds):
            where = r["machine"] + (f"; {r['load']}" if r.get("load") else "")
            lines.append("| " + " | ".join(cell(x) for x in (
                r["method"], metrics_text(r["metrics"]), seconds(r["train_s"]) if "train_s" in r else "-",
                r.get("protocol", "-"), r["date"], where)) + f" | `{cell(r['command'])}` | "
                + cell(r.get("note", "")) + " |")
        lines.append("")
    return lines


def render(records: list[dict[str, Any]]) -> str:
    lines = ["# Results", "",
             "Generated by `python -m bench.report` (`make results`) from the records in "
             "`bench/records/*.jsonl`; edit those, not this file. Every number was measured by "
             "the command beside it, on the machine and under the load named there (seconds on "
             "a shared machine are upper bounds). Test metrics; unless a row says otherwise, every "
             "setting was chosen on a validation split carved from the training data and the test "
             "split was read once. Datasets by their `negspace train --dataset` names, read "
             "from `$NEGSPACE_DATA`. The lab notebook this report replaced (the CML 2-stage grids, "
             "CCL/MML, two-tower and cross-batch negatives, the profiles, with their reasoning), "
             "which comments and older docs cite by section, is in the history: "
             "`git show 259b1dc:docs/results.md`.", "",
             "## Summary: the best per dataset against the peers", "",
             "Best test result per column (validation protocol; bold: the best of the row; "
             "training seconds in brackets). The last column is the published protocol, which "
             "chooses the epoch on the test split: comparable with papers only.", ""]
    lines += summary(records) + [""] + significance_summary(records)
    known = [s for s in SECTIONS if any(r["section"] == s for r in records)]
    other = sorted({r["section"] for r in records} - set(SECTIONS))
    for name in known + other:
        lines += [f"## {SECTIONS.get(name, name)}", ""]
        lines += section([r for r in records if r["section"] == name])
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--records", type=Path, default=RECORDS)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--check", action="store_true", help="exit 1 when OUT is not what the records render")
    args = p.parse_args(argv)
    try:
        text = render(read_records(args.records))
    except ValueError as e:
        print(f"bench.report: {e}", file=sys.stderr)
        return 2
    if args.check:
        same = args.out.exists() and args.out.read_text() == text
        print(f"{args.out.name}: {'up to date' if same else 'differs from the records: run make results'}")
        return 0 if same else 1
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
