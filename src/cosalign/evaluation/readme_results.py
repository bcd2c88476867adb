"""The README's expected-results block, rendered from reports/metrics.json so the two cannot drift.

    python -m cosalign.evaluation.readme_results [--check] [README.md] [reports/metrics.json]

rewrites the block between START and END (after the report stage re-ran); `--check` only exits 1
when the block is stale (tests/test_intervals.py runs the same comparison). The block holds the
held-out table, each score with its 95% interval, and one line per paired difference to the
baseline saying what the interval supports: a difference whose interval covers 0 is "no
difference detected", never a ranking.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cosalign.core import paths
from cosalign.core.io import write_text
from cosalign.cosa.cosa_score import SCORES
from cosalign.evaluation import effect
from cosalign.evaluation.report import SCORE_HEADS, config_sets, diff_cell, model_order, score_cells

START = ("<!-- expected-results: generated from reports/metrics.json by "
         "`python -m cosalign.evaluation.readme_results`; do not edit by hand -->")
END = "<!-- /expected-results -->"
LABELS = {"cosa_score": "CoSA-Score", "helpful_safe": "help+safe", "helpful_unsafe": "help+unsafe",
          "answered_risk_free": "answers risk-free"}


def render(metrics: dict, benchmark: str = "heldout") -> str:
    """The markdown between the markers for one benchmark of metrics.json."""
    sets = config_sets(metrics, benchmark)
    head = ["model"] + [f"{s} {c}" for s in sets for c in SCORE_HEADS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    readings = []
    for model in model_order(metrics):
        groups = [metrics[model].get(f"{benchmark}/{s}") for s in sets]
        if not any(groups):
            continue
        lines.append("| " + " | ".join([model] + [c for g in groups for c in score_cells(g)]) + " |")
        for s, g in zip(sets, groups):
            vs = (g or {}).get("vs_baseline")
            if vs:
                parts = [f"{LABELS[k]} {diff_cell(vs[k], k != 'cosa_score')}" for k in SCORES
                         if (vs.get(k) or {}).get("diff") is not None]  # none: no risk-free items
                readings.append(f"- {model} - {vs['baseline']}, {s} ({vs['n_paired']} pairs): "
                                + "; ".join(parts) + ".")
    has_ci = any("ci" in g for per in metrics.values() for g in per.values())
    if readings:
        lines += ["", "[lo, hi]: 95% bootstrap interval, items resampled within each config (a rate of 0% or "
                  "100% on every item: the Wilson interval). "
                  "Paired differences (same items, rates in percentage points), and what each "
                  "interval supports:", ""] + readings
        lines += ["", "Selective behaviour (issue 20's targets against the baseline on every config set: "
                  f"CoSA-Score >= +{effect.COSA_GAIN:.2f} with the paired interval above 0, help+unsafe <= "
                  f"{effect.UNSAFE_RATIO_MAX:g}x, help+safe >= {effect.SAFE_RATIO_MIN:g}x, answers risk-free >= "
                  f"{effect.ANSWERED_RATIO_MIN:g}x; `cosalign.evaluation.effect`):", ""]
        for model in model_order(metrics):
            baseline = next((g["vs_baseline"]["baseline"] for g in metrics[model].values()
                             if g.get("vs_baseline")), None)
            if baseline is None:
                continue
            miss = effect.missed(metrics, model, baseline)
            diffs = {g.split("/")[-1]: v.get("vs_baseline", {}).get("cosa_score", {})
                     for g, v in sorted(metrics[model].items()) if g.startswith(f"{benchmark}/")}
            widths = [f"{s} {(d['hi'] - d['lo']) / 2:.3f}" for s, d in diffs.items() if d.get("lo") is not None]
            lines.append(f"- {model}: " + ("shown on every config set" if not miss else
                                           f"not shown ({len(miss)} targets missed: "
                                           + "; ".join(x.replace(f"{benchmark}/", "") for x in miss) + ")")
                         + (f". Half-width of the paired CoSA-Score interval: {', '.join(widths)}." if widths else "."))
    elif not has_ci:
        lines += ["", "This metrics.json predates intervals: re-run the report stage "
                  "(`dvc repro report`) and this block (`python -m cosalign.evaluation.readme_results`)."]
    return "\n".join(lines)


def block(readme: str) -> tuple[int, int]:
    """(start, end) character offsets of the generated text between the markers."""
    i, j = readme.find(START), readme.find(END)
    if i < 0 or j < i:
        raise ValueError(f"README has no expected-results block ({START!r} ... {END!r})")
    return i + len(START), j


def updated(readme: str, metrics: dict) -> str:
    i, j = block(readme)
    return readme[:i] + "\n" + render(metrics) + "\n" + readme[j:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the block is stale; write nothing")
    ap.add_argument("readme", nargs="?", default="README.md")
    ap.add_argument("metrics", nargs="?", default=paths.METRICS)
    args = ap.parse_args(argv)
    text = Path(args.readme).read_text(encoding="utf-8")
    new = updated(text, json.loads(Path(args.metrics).read_text(encoding="utf-8")))
    if args.check:
        if new != text:
            print(f"{args.readme}: expected-results block is stale against {args.metrics}", file=sys.stderr)
            return 1
        return 0
    if new != text:
        write_text(new, args.readme)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
