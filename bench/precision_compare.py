"""bf16 vs float32 on the default profile (issue #19 item 3): loss curves overlaid, metrics side by side.

    bash bench/precision_rerun.sh .cache/precision-fp32      # the fp32 side, on this run's pairs
    python bench/precision_compare.py --bf16 . --fp32 .cache/precision-fp32

RUN_A and RUN_B are checkouts that each ran `dvc repro` of the same params but `precision`
(auto, which is bf16 on a CPU with AVX-512 BF16, and fp32). Reads each run's reports/metrics.json
and reports/train/{sft,dpo}.csv, writes bench/results/NAME.json (figures for BENCHMARKS.md; NAME
is `precision` unless --name says otherwise) and bench/results/NAME_loss.png (both runs' loss
curves on one plot per trainer). Where RUN_B holds bench/precision_rerun.sh's stage_times.tsv,
its stage times are set beside the bf16 run's (bench/results/dvc.json, the committed cold run).

"Within intervals" means: each run's point estimate lies inside the other run's 95% interval, for
every model, config set and score. Data artifacts upstream of generation are byte-identical by
construction (same params and seeds); responses and everything after may differ, because the
sampled replies come from a model computed in another precision, unless the fp32 side re-ran only
the stages after the pairs (bench/precision_rerun.sh): then the two runs trained on the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pandas as pd
import yaml

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
    """fp32 - bf16 per model, group and score on the items both runs judged valid (the same heldout
    items: the benchmark's draw depends on the seed and the test split only). On the same items this
    is the sharper test: a share at 0% or 100% has a zero-width bootstrap interval (every resample
    agrees), so one item's change puts the other run's point "outside" it, while the paired
    difference's interval still says whether the change is more than noise."""
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
            for score in SCORES:
                d = {k: vs[score][k] for k in ("diff", "lo", "hi")}
                rows.append({"model": path.stem, "group": f"{bench}/{cset}", "score": score,
                             "n_paired": vs["n_paired"], **d,
                             "covers_0": d["lo"] is not None and d["lo"] <= 0 <= d["hi"]})
    return rows


def stage_times(tsv: Path) -> list[dict]:
    """fp32 stage seconds (bench/precision_rerun.sh) beside the committed bf16 cold run's."""
    if not tsv.exists():
        return []
    fp32 = pd.read_csv(tsv, sep="\t")
    dvc = RESULTS / "dvc.json"
    bf16 = {f["name"].removeprefix("stage "): f["value"] for f in json.loads(dvc.read_text())["figures"]
            if f["name"].startswith("stage ")} if dvc.exists() else {}
    return [figure(f"stage {r.stage} seconds: bf16 / fp32",
                   f"{bf16[r.stage]:.0f} / {r.seconds} ({r.seconds / bf16[r.stage]:.2f}x)"
                   if r.stage in bf16 else f"- / {r.seconds}")
            for r in fp32.itertuples() if r.stage != "report"]


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
    ap.add_argument("--name", default="precision", help="results name: bench/results/NAME.json")
    ap.add_argument("--title", default="bf16 vs float32, default profile (issue 19)",
                    help="the section's title in BENCHMARKS.md")
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
    for r in pairs:  # every CoSA-Score, and any other score whose paired difference excludes 0
        if r["score"] != "cosa_score" and r["covers_0"]:
            continue
        fmt = (lambda v: f"{v:+.3f}") if r["score"] == "cosa_score" else (lambda v: f"{100 * v:+.1f} pt")
        figures.append(figure(f"{r['model']} {r['group']} {r['score']}, fp32 - bf16 on {r['n_paired']} paired items",
                              f"{fmt(r['diff'])} [{fmt(r['lo'])}, {fmt(r['hi'])}]"
                              + (": no difference detected" if r["covers_0"] else ": **differ**")))
    same = [name for name in DATA if _sha(args.bf16 / f"data/{name}.parquet") == _sha(args.fp32 / f"data/{name}.parquet")]
    figures.append(figure("data artifacts byte-identical in both runs", ", ".join(same) or "none"))
    fp32_eval = yaml.safe_load((args.fp32 / "params.yaml").read_text()).get("precision") == "fp32"
    if fp32_eval:
        figures += stage_times(args.fp32 / "stage_times.tsv")  # an fp32 re-run's own times
    within = all(r["within"] for r in rows)
    # Issue 19's criterion. The paired count is a figure, not a target: of n intervals at 95%,
    # 0.05 n exclude 0 by chance alone even where the arithmetic changed nothing.
    targets = [{"name": "every score of every model inside the other run's 95% interval",
                "value": f"{sum(r['within'] for r in rows)} of {len(rows)}", "unit": "", "op": "=",
                "goal": "all", "met": within}]
    figures.append(figure("paired differences (fp32 - bf16, same items) whose 95% interval excludes 0",
                          f"{sum(not r['covers_0'] for r in pairs)} of {len(pairs)} "
                          f"({0.05 * len(pairs):.1f} expected by chance alone)"))
    if not fp32_eval:  # a diagnostic split of issue 19's comparison, not the comparison itself
        figures += [figure(t["name"], t["value"]) for t in targets]
        targets = []
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(curves, RESULTS / f"{args.name}_loss.png")
    if "preferences" not in same:
        design = ("The two runs share params and seeds and differ only in `precision`; the sampled "
                  "responses (and so the pairs) differ because generation ran in another precision.")
    elif fp32_eval:
        design = ("Both runs trained on the same pairs (data/preferences.parquet byte-identical: the fp32 "
                  "side is bench/precision_rerun.sh, which re-ran only the stages after the pairs), so "
                  "the loss curves see the same batches in the same order and the scores differ by "
                  "training and evaluation arithmetic alone; base_ica, which is not trained, differs by "
                  "evaluation arithmetic alone.")
    else:
        design = ("Both runs trained on the same pairs and evaluated in bf16: the second run's models were "
                  "trained in fp32 (bench/precision_rerun.sh --bf16-eval), so the scores differ by "
                  "training arithmetic alone (base_ica's evaluation is the same file in both).")
    notes = [f"Loss curves overlaid: bench/results/{args.name}_loss.png. {design} Checkpoints and "
             "generations also differ between CPU types (docs/precision.md)."]
    write_result(args.name, args.title, figures, targets, quick=False,
                 details={"rows": rows, "paired": pairs, "same_data": same}, notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
