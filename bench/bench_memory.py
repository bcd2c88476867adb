"""Peak memory of the data stages that do not generate, as the prompt count grows 10x.

One subprocess per (stage, scale). It imports everything, loads the stage's models (MiniLM, the
rules judge's classifier) and builds the stage's input frames, then takes its baseline: the
resident set size (VmRSS) at that moment. The kernel's peak counter is reset there
(`/proc/self/clear_refs` = 5 resets VmHWM), the stage's library function runs, and the figure is
VmHWM minus the baseline: what the stage's work adds on top of what it had to hold anyway.

- taxonomy:    cosalign.taxonomy_derivation.derive_taxonomy (default profile's section);
- configs:     cosalign.configs.sample_configs over every training prompt (the stage first keeps a
               seeded subset of `max_train_prompts`; that cap is left out here so the work grows);
- judgments:   cosalign.judging.judge_responses with the rules judge, 1 response per prompt;
- preferences: cosalign.pairing.build_pairs over a judged pool of 3 responses per prompt.

1x is the 618 seed prompts; 10x adds 9 paraphrased copies of each (bench/synthetic.py).

    python bench/bench_memory.py            # ~7 min on 2 cores
    python bench/bench_memory.py --quick    # 20 and 200 prompts
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, bench_env, figure, scratch_dir, target, write_result  # noqa: E402

STAGES = ["taxonomy", "configs", "judgments", "preferences"]
TARGET_RATIO = 1.5
MODES = ["exact_match", "superset", "safe", "not_superset"]


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def profile_section(name: str) -> dict:
    import yaml

    return yaml.safe_load((REPO / "profiles" / "default.yaml").read_text())[name]


def prepare(stage: str, scale: int, limit: int | None):
    """Load the stage's models and inputs; return the work to measure."""
    from synthetic import labels_frame, pool_frame, prompts_frame, responses_frame

    prompts = prompts_frame(scale, limit)
    labels = labels_frame(prompts)
    if stage == "taxonomy":
        from cosalign.embedding import embed
        from cosalign.taxonomy_derivation import derive_taxonomy

        p = profile_section("taxonomy")
        embed(["load the model"], name=p["embedder"]["name"])  # cached: the stage's model load
        return lambda: derive_taxonomy(prompts, p), len(prompts)
    if stage == "configs":
        from cosalign.configs import load_templates, sample_configs

        load_templates("train")
        return lambda: sample_configs(prompts, labels, modes=MODES, configs_per_mode=1, seed=0), len(prompts)
    if stage == "judgments":
        from cosalign.judges.base import make_judge
        from cosalign.judging import judge_responses

        p = profile_section("judgments")
        make_judge(p["judge"]).judge_responses([("warm up", "load the models")])  # MiniLM + classifier
        # One 40-word compliance per prompt: embedding it is the judge's cost (~35 ms each on 2 cores),
        # and what the peak depends on is the batch shape, not how many batches follow.
        responses = responses_frame(prompts, words=40, kinds=("comply",))
        return lambda: judge_responses(responses, prompts, p["judge"], p["work_batch_size"]), len(responses)
    if stage == "preferences":
        from cosalign.configs import sample_configs
        from cosalign.pairing import build_pairs

        configs = sample_configs(prompts, labels, modes=MODES, configs_per_mode=1, seed=0)
        pool = pool_frame(responses_frame(prompts, words=40), labels)
        return lambda: build_pairs(pool, configs, prompts, labels_df=labels, seed=0), len(configs)
    raise ValueError(stage)


def worker(stage: str, scale: int, limit: int | None) -> dict:
    work, items = prepare(stage, scale, limit)
    gc.collect()
    baseline = status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS from here on
    start = time.perf_counter()
    out = work()
    seconds = time.perf_counter() - start
    peak = status_kib("VmHWM")
    return {"stage": stage, "scale": scale, "items": items, "rows_out": len(out) if hasattr(out, "__len__") else None,
            "baseline_mib": baseline / 1024, "peak_mib": peak / 1024, "above_mib": (peak - baseline) / 1024,
            "seconds": seconds}


def run(stage: str, scale: int, limit: int | None, scratch: Path) -> dict:
    out = scratch / f"{stage}-{scale}.json"
    env = bench_env()
    env["COSALIGN_CACHE"] = str(scratch / "cosalign-cache")  # the rules judge's fitted classifier
    cmd = [sys.executable, __file__, "--worker", stage, "--scale", str(scale), "--result", str(out)]
    if limit:
        cmd += ["--limit", str(limit)]
    print(f"{stage} x{scale} ...", flush=True)
    # cwd: the judgments stage checkpoints under ./.cache/work; keep that out of the repository
    proc = subprocess.run(cmd, env=env, cwd=scratch, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return {"stage": stage, "scale": scale, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20 prompts at 1x")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--scale", type=int, default=10, help="the larger run's multiple of the prompts")
    ap.add_argument("--limit", type=int, default=None, help="seed prompts at 1x (default all 618)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        res = worker(args.worker, args.scale, args.limit)
        Path(args.result).write_text(json.dumps(res))
        return 0
    limit = args.limit or (20 if args.quick else None)
    stages = args.stages.split(",")
    results = {}
    with scratch_dir("memory") as tmp:
        for stage in stages:
            for scale in (1, args.scale):
                results[f"{stage}/x{scale}"] = run(stage, scale, limit, Path(tmp))

    figures, targets = [figure("prompts at 1x", limit or 618)], []
    for stage in stages:
        small, big = results[f"{stage}/x1"], results[f"{stage}/x{args.scale}"]
        if "error" in small or "error" in big:
            figures.append(figure(stage, f"failed: {small.get('error') or big.get('error')}"))
            targets.append(target(f"{stage}: peak above baseline, x{args.scale} / x1", None, TARGET_RATIO, "<="))
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
        targets.append(target(f"{stage}: peak above baseline, x{args.scale} / x1", round(ratio, 2),
                              TARGET_RATIO, "<="))
    write_result("memory", "Peak memory of the non-generating data stages", figures, targets,
                 quick=args.quick, details=results,
                 notes=["Baseline = VmRSS after imports, model loads and building the input frames; "
                        "peak = VmHWM during the stage function (reset via /proc/self/clear_refs).",
                        "Ratios use max(1 MiB, x1 figure) as the denominator."])
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
