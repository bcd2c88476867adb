"""Peak memory of the data stages that do not generate, as the prompt count grows 10x.

Each (stage, scale) runs in its own subprocess, in a scratch directory laid out like the
repository: `params.yaml` (the default profile, with the caps that keep the CPU run small
removed, so the work really grows 10x: configs.max_train_prompts and preferences.max_pairs set to
null) and the stage's input files under `data/`, written from bench/synthetic.py. The subprocess
imports everything and loads the stage's models (MiniLM for taxonomy; MiniLM + the fitted
classifier for the rules judge), then takes its baseline: the resident set size (VmRSS). The
kernel's peak counter is reset there (`/proc/self/clear_refs` = 5 resets VmHWM), the stage
script's own `main()` runs (reading its inputs, working, validating and writing its outputs), and
the figure is VmHWM minus the baseline. The subprocess gets the environment variables the stage's
command sets in dvc.yaml (e.g. glibc allocator settings), as under `dvc repro`.

- taxonomy:    stages/taxonomy.py over data/prompts.parquet;
- configs:     stages/configs.py over every training prompt (4 modes, 1 config each);
- judgments:   stages/judgments.py with the rules judge, one 40-word answer per prompt;
- preferences: stages/preferences.py over 3 judged answers per prompt and the configs above.

1x is the 618 seed prompts; 10x adds 9 paraphrased copies of each (bench/synthetic.py).

    python bench/bench_memory.py                          # ~8 min on 2 cores
    python bench/bench_memory.py --stages configs         # one stage (comma-separated list)
    python bench/bench_memory.py --quick                  # 20 and 200 prompts
    python bench/bench_memory.py --no-write               # print, leave bench/results alone
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, bench_env, figure, scratch_dir, stage_env, target, write_result  # noqa: E402

STAGES = ["taxonomy", "configs", "judgments", "preferences"]
OUTPUT = {"taxonomy": "data/taxonomy.json", "configs": "data/configs.parquet",
          "judgments": "data/judgments.parquet", "preferences": "data/preferences.parquet"}
TARGET_RATIO = 1.5
MODES = ["exact_match", "superset", "safe", "not_superset"]


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def write_inputs(stage: str, scale: int, limit: int | None, workdir: Path) -> int:
    """params.yaml and the stage's input files in `workdir`; returns the stage's item count."""
    from synthetic import labels_frame, pool_frame, prompts_frame, responses_frame

    from cosalign.data.configs import sample_configs
    from cosalign.core.io import write_parquet

    params = yaml.safe_load((REPO / "profiles" / "default.yaml").read_text())
    params["configs"]["max_train_prompts"] = None
    params["preferences"]["max_pairs"] = None
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    # in prompt_id order, as the prompts stage writes them (the streaming stages check it)
    prompts = prompts_frame(scale, limit).sort_values("prompt_id", kind="stable").reset_index(drop=True)
    labels = labels_frame(prompts)
    write_parquet(prompts, data / "prompts.parquet")
    write_parquet(labels, data / "prompt_labels.parquet")
    if stage == "judgments":
        # One 40-word compliance per prompt: embedding it is the judge's cost (~35 ms on 2 cores).
        write_parquet(responses_frame(prompts, words=40, kinds=("comply",)), data / "responses.parquet")
    if stage == "preferences":
        configs = sample_configs(prompts, labels, modes=MODES, configs_per_mode=1, seed=0)
        responses = responses_frame(prompts, words=40)
        pool = pool_frame(responses, labels)
        judgments = pool[["response_id", "risk_categories", "addressed", "helpfulness", "valid"]].assign(
            judge="bench", raw="")
        write_parquet(configs, data / "configs.parquet")
        write_parquet(responses, data / "responses.parquet")
        write_parquet(judgments, data / "judgments.parquet")
        return len(configs)
    return len(prompts)


def load_models(stage: str, params: dict) -> None:
    """What the stage loads before its work: charged to the baseline, not to the peak."""
    if stage == "taxonomy":
        from cosalign.models.embedding import embed

        embed(["load the model"], name=params["taxonomy"]["embedder"]["name"])  # lru-cached
    if stage == "judgments":
        from cosalign.judges.base import make_judge

        make_judge(params["judgments"]["judge"]).judge_responses([("warm up", "load the models")])


def stage_main(stage: str):
    spec = importlib.util.spec_from_file_location(f"stage_{stage}", REPO / "stages" / f"{stage}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def worker(stage: str, workdir: Path) -> dict:
    os.chdir(workdir)  # stages read params.yaml and data/ relative to the working directory
    main = stage_main(stage)
    load_models(stage, yaml.safe_load(Path("params.yaml").read_text()))
    gc.collect()
    baseline = status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS from here on
    start = time.perf_counter()
    main()
    seconds = time.perf_counter() - start
    peak = status_kib("VmHWM")
    out = Path(OUTPUT[stage])
    if out.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(out).metadata.num_rows
    else:
        rows = json.loads(out.read_text())["derivation"]["n_prompts"]
    return {"stage": stage, "rows_out": rows, "baseline_mib": baseline / 1024, "peak_mib": peak / 1024,
            "above_mib": (peak - baseline) / 1024, "seconds": seconds}


def stage_process_env(stage: str, scratch: Path) -> dict:
    env = bench_env()
    env["COSALIGN_CACHE"] = str(scratch / "cosalign-cache")  # the rules judge's fitted classifier
    env.update(stage_env(stage))  # read by the allocators at process start
    return env


def fit_judge(scratch: Path) -> None:
    """Fit and cache the rules judge's classifier once, in its own process: a fit inside the 1x
    worker would leave freed memory behind that its stage then reuses, hiding the stage's own peak."""
    code = ("import yaml; from cosalign.judges.base import make_judge; "
            f"make_judge(yaml.safe_load(open({str(REPO / 'profiles' / 'default.yaml')!r}))['judgments']['judge'])")
    subprocess.run([sys.executable, "-c", code], env=stage_process_env("judgments", scratch), check=True,
                   capture_output=True)


def run(stage: str, scale: int, limit: int | None, scratch: Path) -> dict:
    workdir = scratch / f"{stage}-x{scale}"
    items = write_inputs(stage, scale, limit, workdir)
    result = workdir / "result.json"
    env = stage_process_env(stage, scratch)
    print(f"{stage} x{scale} ({items} items) ...", flush=True)
    proc = subprocess.run([sys.executable, __file__, "--worker", stage, "--workdir", str(workdir),
                           "--result", str(result)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return {"stage": stage, "scale": scale, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    res = json.loads(result.read_text())
    res.update(scale=scale, items=items)
    print(f"  {res['above_mib']:.1f} MiB above a {res['baseline_mib']:.0f} MiB baseline, {res['seconds']:.1f} s",
          flush=True)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20 prompts at 1x")
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated, from " + ",".join(STAGES))
    ap.add_argument("--scale", type=int, default=10, help="the larger run's multiple of the prompts")
    ap.add_argument("--limit", type=int, default=None, help="seed prompts at 1x (default all 618)")
    ap.add_argument("--no-write", action="store_true", help="print only; keep bench/results/memory.json")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        res = worker(args.worker, Path(args.workdir))
        Path(args.result).write_text(json.dumps(res))
        return 0
    limit = args.limit or (20 if args.quick else None)
    stages = args.stages.split(",")
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        ap.error(f"unknown stage(s) {unknown}")
    results = {}
    with scratch_dir("memory") as tmp:
        if "judgments" in stages:
            fit_judge(Path(tmp))
        for stage in stages:
            for scale in (1, args.scale):
                results[f"{stage}/x{scale}"] = run(stage, scale, limit, Path(tmp))

    figures, targets = [figure("prompts at 1x", limit or 618)], []
    for stage in stages:
        small, big = results[f"{stage}/x1"], results[f"{stage}/x{args.scale}"]
        name = f"{stage}: peak above baseline, x{args.scale} / x1"
        if "error" in small or "error" in big:
            figures.append(figure(stage, f"failed: {small.get('error') or big.get('error')}"))
            targets.append(target(name, None, TARGET_RATIO, "<="))
            continue
        # A floor of 1 MiB keeps a near-zero 1x figure from turning noise into a huge ratio.
        ratio = big["above_mib"] / max(small["above_mib"], 1.0)
        figures.append(figure(f"{stage}: items x1 / x{args.scale}", f"{small['items']} / {big['items']}"))
        figures.append(figure(f"{stage}: peak above baseline x1 / x{args.scale}",
                              f"{small['above_mib']:.1f} / {big['above_mib']:.1f}", "MiB"))
        figures.append(figure(f"{stage}: baseline x1 / x{args.scale}",
                              f"{small['baseline_mib']:.0f} / {big['baseline_mib']:.0f}", "MiB"))
        figures.append(figure(f"{stage}: seconds x1 / x{args.scale}",
                              f"{small['seconds']:.2f} / {big['seconds']:.2f}", "s"))
        targets.append(target(name, round(ratio, 2), TARGET_RATIO, "<="))
    if args.no_write:
        for t in targets:
            print(f"{t['name']}: {t['value']} {t['op']} {t['goal']} -> {'met' if t['met'] else 'NOT met'}")
    else:
        write_result("memory", "Peak memory of the non-generating data stages", figures, targets,
                     quick=args.quick, details=results,
                     notes=["Baseline = VmRSS after imports and model loads; peak = VmHWM while the stage "
                            "script's main() reads its inputs, works and writes its outputs (reset via "
                            "/proc/self/clear_refs).",
                            "Caps removed so the work grows with the prompts: configs.max_train_prompts "
                            "and preferences.max_pairs are null.",
                            "Ratios use max(1 MiB, x1 figure) as the denominator."])
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
