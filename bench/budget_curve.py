"""Issue #20 item 4: the CoSA-Score difference (dpo - base_ica, sft - base_ica) against the
training budget, with paired 95% intervals.

    python bench/budget_curve.py run       # queue bench/budget_curve.yaml's budgets, run them, collect
    python bench/budget_curve.py collect   # only collect the finished experiments

`run` queues each budget with `dvc exp run --queue -n NAME -S key=value ...` from the committed
default run, starts one queue worker (`dvc queue start -j 1`: 2 cores hold one run at a time),
and polls `dvc queue status`, timing each experiment from the poll that first sees it running to
the one that sees it done (+-20 s). `collect` reads each experiment's reports/metrics.json from
its git ref and writes:
- reports/budget_curve.json: per budget, the params, pairs x epochs, wall time, and per trained
  model and config set the paired difference and evaluation.effect's targets;
- reports/budget_curve.png: the CoSA-Score difference with intervals against pairs x epochs;
- bench/results/budget_curve.json: the same figures for BENCHMARKS.md (bench/run_all.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from common import REPO, figure, write_result
from cosalign.core.io import read_parquet, write_json
from cosalign.evaluation import effect

BUDGETS = REPO / "bench" / "budget_curve.yaml"
OUT_JSON = REPO / "reports" / "budget_curve.json"
OUT_PNG = REPO / "reports" / "budget_curve.png"
TIMES = REPO / ".cache" / "budget_curve_times.json"  # written by `run`, read by `collect`
MODELS = ("sft", "dpo")
POLL_S = 20


def load_budgets(path: Path = BUDGETS) -> list[dict]:
    budgets = yaml.safe_load(path.read_text())["budgets"]
    if not 1 <= len(budgets) <= 3:
        raise ValueError(f"{path}: issue 20 allows 1 to 3 budgets, found {len(budgets)}")
    return budgets


def _dvc(*args: str, check: bool = True) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=REPO, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def queue(budgets: list[dict]) -> None:
    for b in budgets:
        sets = [a for k, v in b["set"].items() for a in ("-S", f"{k}={v}")]
        _dvc("exp", "run", "--queue", "-n", b["name"], *sets)
        print(f"queued {b['name']} {b['set']}", flush=True)


def _states(names: list[str]) -> dict[str, str]:
    """name -> status word from `dvc queue status` (Queued, Running, Success, Failed)."""
    out = _dvc("queue", "status", check=False)
    states = {}
    for line in out.splitlines():
        parts = line.split()
        for name in names:
            if name in parts:
                states[name] = next((w for w in parts if w in ("Queued", "Running", "Success", "Failed")), "?")
    return states


def start_worker() -> None:
    """`dvc queue start` leaves a worker daemon behind that holds the stdout it was given: give it
    none, or waiting for the command's output would wait for the whole queue."""
    subprocess.run([sys.executable, "-m", "dvc", "queue", "start", "-j", "1"], cwd=REPO, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


def run_queue(budgets: list[dict]) -> dict[str, dict]:
    names = [b["name"] for b in budgets]
    start_worker()
    times: dict[str, dict] = {n: {} for n in names}
    t0 = time.time()
    while True:
        now = time.time()
        states = _states(names)
        for n, s in states.items():
            if s == "Running":
                times[n].setdefault("start", now)
            elif s in ("Success", "Failed"):
                times[n].setdefault("start", now)
                times[n].setdefault("end", now)
                times[n]["status"] = s
        print(f"[{now - t0:6.0f} s] " + ", ".join(f"{n}: {states.get(n, '?')}" for n in names), flush=True)
        if all("end" in times[n] for n in names):
            break
        time.sleep(POLL_S)
    _dvc("queue", "stop", check=False)
    return {n: {"seconds": round(t["end"] - t["start"]), "status": t["status"]} for n, t in times.items()}


def _exp_ref(name: str) -> str:
    refs = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], cwd=REPO,
                          capture_output=True, text=True, check=True).stdout.split()
    found = [r for r in refs if r.rsplit("/", 1)[-1] == name]
    if not found:
        raise RuntimeError(f"no experiment named {name!r} (refs/exps): run `python bench/budget_curve.py run`")
    return found[-1]


def _show(ref: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{ref}:{path}"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout


def _params(ref: str) -> dict:
    return yaml.safe_load(_show(ref, "params.yaml"))


def _cached_out(ref: str, path: str) -> Path:
    """A DVC out of an experiment, from the local cache, by the md5 its dvc.lock records."""
    lock = yaml.safe_load(_show(ref, "dvc.lock"))
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] == path:
                md5 = out["md5"]
                return REPO / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    raise RuntimeError(f"{ref}: dvc.lock has no out {path}")


def answer_rates(eval_items) -> dict[str, float]:
    """Share of valid items answered (helpfulness > 0) per heldout situation: a model that reads the
    config answers 'allowed' items and refuses 'disallowed' ones; one that only reads the prompt
    treats them alike."""
    valid = eval_items[eval_items["valid"]]
    return {s: round(float((g["helpfulness"] > 0).mean()), 3) for s, g in valid.groupby("situation")}


def budget_row(budget: dict, metrics: dict, params: dict, seconds: int | None,
               rates: dict | None = None) -> dict:
    pairs = params["preferences"]["max_pairs"]
    epochs = params["dpo"]["optim"]["num_train_epochs"]
    row = {"name": budget["name"], "set": budget["set"], "max_pairs": pairs, "epochs": epochs,
           "pair_epochs": pairs * epochs, "seconds": seconds, "models": {}, "answer_rates": rates or {}}
    for model in MODELS:
        groups = {}
        for group, m in sorted(metrics.get(model, {}).items()):
            d = m.get("vs_baseline", {}).get("cosa_score", {})
            groups[group] = {"cosa_score": m["cosa_score"], "diff": d.get("diff"), "lo": d.get("lo"),
                             "hi": d.get("hi"), "n_paired": m.get("vs_baseline", {}).get("n_paired")}
        row["models"][model] = {"groups": groups, "checks": effect.checks(metrics, model),
                                "shows_effect": effect.shows_effect(metrics, model)}
    return row


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: r["pair_epochs"])  # lines run left to right
    groups = sorted({g for r in rows for m in r["models"].values() for g in m["groups"]})
    fig, axes = plt.subplots(1, len(groups) + 1, figsize=(5 * (len(groups) + 1), 3.8), squeeze=False)
    for ax, group in zip(axes[0], groups):
        for k, model in enumerate(MODELS):
            pts = [(r["pair_epochs"], r["models"][model]["groups"].get(group)) for r in rows]
            pts = [(x + (k - 0.5) * 8, g) for x, g in pts if g and g["diff"] is not None]
            ax.errorbar([x for x, _ in pts], [g["diff"] for _, g in pts],
                        yerr=[[g["diff"] - g["lo"] for _, g in pts], [g["hi"] - g["diff"] for _, g in pts]],
                        fmt="o-", capsize=4, label=f"{model} - base_ica")
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.axhline(effect.COSA_GAIN, color="green", linestyle="--", linewidth=0.8, label="target +0.10")
        ax.set_title(f"{group}: CoSA-Score difference")
        ax.set_xlabel("training budget: pairs x epochs")
        ax.legend(fontsize=8)
    ax = axes[0][-1]
    situations = sorted({s for r in rows for s in r["answer_rates"].get("dpo", {})})
    for s in situations:
        pts = [(r["pair_epochs"], r["answer_rates"]["dpo"][s]) for r in rows if s in r["answer_rates"].get("dpo", {})]
        ax.plot([x for x, _ in pts], [y for _, y in pts], "o-", label=s)
    ax.set_title("dpo: share answered, by heldout situation")
    ax.set_xlabel("training budget: pairs x epochs")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)


def collect(budgets: list[dict]) -> list[dict]:
    times = json.loads(TIMES.read_text()) if TIMES.exists() else {}
    rows = []
    for b in budgets:
        ref = _exp_ref(b["name"])
        metrics = json.loads(_show(ref, "reports/metrics.json"))
        rates = {m: answer_rates(read_parquet(_cached_out(ref, f"reports/eval/{m}.parquet")))
                 for m in ("base_ica", *MODELS)}
        rows.append(budget_row(b, metrics, _params(ref), times.get(b["name"], {}).get("seconds"), rates))
    write_json({"budgets": rows, "targets": effect.__doc__.strip().splitlines()[0]}, OUT_JSON)
    plot(rows, OUT_PNG)
    figures = []
    for r in rows:
        when = ("the committed run, nothing re-ran" if r["seconds"] == 0 else
                f"{r['seconds'] / 60:.1f} min" if r["seconds"] is not None else "time not recorded")
        for model in MODELS:
            m = r["models"][model]
            diffs = "; ".join(f"{g.split('/')[-1]} {v['diff']:+.3f} [{v['lo']:+.3f}, {v['hi']:+.3f}]"
                              for g, v in m["groups"].items())
            figures.append(figure(f"{r['name']} ({r['pair_epochs']:g} pair-epochs, {when}): {model} - base_ica "
                                  "CoSA-Score", diffs + ("; **effect shown**" if m["shows_effect"] else
                                                         f"; targets missed: {sum(not c['met'] for c in m['checks'])}"
                                                         f" of {len(m['checks'])}")))
        rates = r["answer_rates"]
        if rates:
            figures.append(figure(f"{r['name']}: share answered by situation (base_ica / sft / dpo)", "; ".join(
                f"{s} " + " / ".join(f"{100 * rates[m].get(s, float('nan')):.0f}%" for m in ("base_ica", *MODELS))
                for s in sorted(rates["dpo"]))))
    spent = sum(r["seconds"] or 0 for r in rows) / 60
    shown = [r["name"] for r in rows if r["models"]["dpo"]["shows_effect"]]
    targets = [{"name": "a budget where dpo meets issue 20's targets on both config sets", "value":
                ", ".join(shown) or "none", "unit": "", "op": "in", "goal": "some budget", "met": bool(shown)},
               {"name": "CPU-minutes of the curve's experiments", "value": round(spent, 1), "unit": "min",
                "op": "<=", "goal": 90, "met": spent <= 90}]
    write_result("budget_curve", "Where the effect appears: training budget curve (issue 20)", figures, targets,
                 quick=False, details={"budgets": rows},
                 notes=["Plot: reports/budget_curve.png (paired 95% intervals; green dashed line: the +0.10 "
                        "target). Budgets and their overrides: bench/budget_curve.yaml. Data upstream of the "
                        "preferences stage is the committed default run's. The evaluate stage declares "
                        "data/preferences.parquet for every model (base_ica_5shot's demos come from it), so "
                        "base_ica was re-evaluated in each budget (identical scores)"
                        + (f", which took the curve over 90 minutes ({spent:.1f})." if spent > 90 else ".")])
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["run", "collect"])
    args = ap.parse_args(argv)
    budgets = load_budgets()
    if args.action == "run":
        if not _states([b["name"] for b in budgets]):  # already queued: only wait for them
            queue(budgets)
        times = run_queue(budgets)
        TIMES.parent.mkdir(exist_ok=True)
        write_json(times, TIMES)
        failed = [n for n, t in times.items() if t["status"] != "Success"]
        if failed:
            print(f"failed: {failed} (`dvc queue logs NAME`)", file=sys.stderr)
            return 1
    collect(budgets)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
