"""bf16 vs float32 on the default profile (issue #19 item 3): loss curves overlaid, metrics side by side.

    python bench/precision_compare.py --bf16 RUN_A --fp32 RUN_B

RUN_A and RUN_B are checkouts that each ran `dvc repro` of the same params but `precision`
(auto, which is bf16 on a CPU with AVX-512 BF16, and fp32). Reads each run's reports/metrics.json
and reports/train/{sft,dpo}.csv, writes bench/results/precision.json (figures for BENCHMARKS.md)
and bench/results/precision_loss.png (both runs' loss curves on one plot per trainer).

"Within intervals" means: each run's point estimate lies inside the other run's 95% interval, for
every model, config set and score. Data artifacts upstream of generation are byte-identical by
construction (same params and seeds); responses and everything after may differ, because the
sampled replies come from a model computed in another precision.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pandas as pd

from common import RESULTS, figure, write_result
from cosalign.cosa.cosa_score import SCORES  # a score either run lacks is skipped
DATA = ("prompts", "prompt_labels", "configs", "responses", "judgments", "preferences")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.exists() else "absent"


def _inside(value, ci: dict) -> bool:
    return ci.get("lo") is not None and ci["lo"] - 1e-9 <= value <= ci["hi"] + 1e-9


def compare_metrics(a: dict, b: dict) -> list[dict]:
    """One row per (model, group, score) present in both runs."""
    rows = []
    for model in sorted(set(a) & set(b)):
        for group in sorted(set(a[model]) & set(b[model])):
            ga, gb = a[model][group], b[model][group]
            for score in SCORES:
                va, vb = ga.get(score), gb.get(score)
                if va is None or vb is None:
                    continue
                ca, cb = ga["ci"][score], gb["ci"][score]
                rows.append({"model": model, "group": group, "score": score, "bf16": va, "fp32": vb,
                             "bf16_ci": (ca["lo"], ca["hi"]), "fp32_ci": (cb["lo"], cb["hi"]),
                             "within": _inside(va, cb) and _inside(vb, ca)})
    return rows


def paired(run_a: Path, run_b: Path, seed: int = 0) -> list[dict]:
    """fp32 - bf16 per model and group on the items both runs judged valid (the same heldout items:
    the benchmark's draw depends on the seed and the test split only)."""
    from cosalign.cosa import cosa_score
    from cosalign.core.io import read_parquet

    rows = []
    for path in sorted((run_a / "reports/eval").glob("*.parquet")):
        other = run_b / "reports/eval" / path.name
        if not other.exists():
            continue
        a, b = read_parquet(path).assign(model="bf16"), read_parquet(other).assign(model="fp32")
        for (bench, cset), ga in a.groupby(["benchmark", "config_set"]):
            gb = b[(b["benchmark"] == bench) & (b["config_set"] == cset)]
            vs = cosa_score.vs_baseline(gb, ga, "bf16", seed)
            d = vs["cosa_score"]
            rows.append({"model": path.stem, "group": f"{bench}/{cset}", "n_paired": vs["n_paired"], **d,
                         "covers_0": d["lo"] is not None and d["lo"] <= 0 <= d["hi"]})
    return rows


def loss_curves(run: Path, trainer: str) -> pd.DataFrame:
    return pd.read_csv(run / "reports" / "train" / f"{trainer}.csv")


def plot(curves: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.5))
    for ax, (trainer, runs) in zip(axes, curves.items()):
        for label, df in runs.items():
            ax.plot(df["step"], df["loss"], label=label, linewidth=1.2)
        ax.set_title(f"{trainer}: training loss")
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bf16", type=Path, required=True, help="checkout of the precision: auto (bf16) run")
    ap.add_argument("--fp32", type=Path, required=True, help="checkout of the precision: fp32 run")
    args = ap.parse_args(argv)
    ma = json.loads((args.bf16 / "reports/metrics.json").read_text())
    mb = json.loads((args.fp32 / "reports/metrics.json").read_text())
    rows = compare_metrics(ma, mb)
    figures, curves = [], {}
    for r in rows:
        fmt = (lambda v: f"{v:.3f}") if r["score"] == "cosa_score" else (lambda v: f"{100 * v:.1f}%")
        figures.append(figure(f"{r['model']} {r['group']} {r['score']}: bf16 / fp32",
                              f"{fmt(r['bf16'])} [{fmt(r['bf16_ci'][0])}, {fmt(r['bf16_ci'][1])}] / "
                              f"{fmt(r['fp32'])} [{fmt(r['fp32_ci'][0])}, {fmt(r['fp32_ci'][1])}]"
                              + ("" if r["within"] else "  **outside**")))
    for trainer in ("sft", "dpo"):
        a, b = loss_curves(args.bf16, trainer), loss_curves(args.fp32, trainer)
        curves[trainer] = {"bf16 (auto)": a, "fp32": b}
        n = min(len(a), len(b))
        gap = (a["loss"].head(n) - b["loss"].head(n)).abs()
        figures.append(figure(f"{trainer} loss, first 5 steps mean: bf16 / fp32",
                              f"{a['loss'].head(5).mean():.4f} / {b['loss'].head(5).mean():.4f}"))
        figures.append(figure(f"{trainer} loss, last 5 steps mean: bf16 / fp32",
                              f"{a['loss'].tail(5).mean():.4f} / {b['loss'].tail(5).mean():.4f}"))
        figures.append(figure(f"{trainer} loss, largest per-step gap (of {n} steps)", round(float(gap.max()), 4)))
    pairs = paired(args.bf16, args.fp32)
    for r in pairs:
        figures.append(figure(f"{r['model']} {r['group']} CoSA-Score, fp32 - bf16 on {r['n_paired']} paired items",
                              f"{r['diff']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]"
                              + (": no difference detected" if r["covers_0"] else ": **differ**")))
    same = [name for name in DATA if _sha(args.bf16 / f"data/{name}.parquet") == _sha(args.fp32 / f"data/{name}.parquet")]
    figures.append(figure("data artifacts byte-identical in both runs", ", ".join(same) or "none"))
    within = all(r["within"] for r in rows)
    targets = [{"name": "every score of every model inside the other run's 95% interval",
                "value": f"{sum(r['within'] for r in rows)} of {len(rows)}", "unit": "", "op": "=",
                "goal": "all", "met": within},
               {"name": "paired CoSA-Score difference (fp32 - bf16, same items) covers 0",
                "value": f"{sum(r['covers_0'] for r in pairs)} of {len(pairs)}", "unit": "", "op": "=",
                "goal": "all", "met": bool(pairs) and all(r["covers_0"] for r in pairs)}]
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(curves, RESULTS / "precision_loss.png")
    notes = ["Loss curves overlaid: bench/results/precision_loss.png. The two runs share params and seeds "
             "and differ only in `precision`; data upstream of the responses stage is byte-identical, the "
             "sampled responses (and so the pairs) differ because generation ran in another precision. "
             "Checkpoints and generations also differ between CPU types (docs/precision.md)."]
    write_result("precision", "bf16 vs float32, default profile (issue 19)", figures, targets, quick=False,
                 details={"rows": rows, "paired": pairs}, notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
