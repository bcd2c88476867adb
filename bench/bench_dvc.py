"""`dvc repro` wall time: per stage and in total for a profile, then a no-op re-run.

The repository is copied to a temporary directory as a fresh clone would hold it
(tests/pipeline_run.py: tracked and unignored files, the profile as params.yaml, a new git repo);
the SmolLM2 wheel, which git ignores, is copied along. `dvc repro` runs there with its output
streamed line by line (unbuffered), so each stage's wall time runs from DVC's
"Running stage 'X'" line to the next one (or the end): the stage's command plus DVC's hashing and
lock-file work for it. Then `dvc repro` runs again with nothing changed, `--repeats` times.

    python bench/bench_dvc.py                   # default profile, full pipeline (~25-30 min, 2 cores)
    python bench/bench_dvc.py --quick           # tiny profile, stages base_model and prompts only
    python bench/bench_dvc.py --profile tiny    # the whole tiny profile
    python bench/bench_dvc.py --in-place        # this checkout's params.yaml, every stage forced

--in-place times the run whose dvc.lock gets committed: `dvc repro --force --no-run-cache` in the
repository itself (its params.yaml as it is), after removing the resumable checkpoints under
.cache/work, so every stage really runs.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, WHEEL, figure, scratch_dir, target, timed, write_result  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))  # tests/ is not a package
from pipeline_run import copy_repo, env_for  # noqa: E402

RUNNING = re.compile(r"Running stage '([^']+)'")
TARGET_FULL_S = 30 * 60
TARGET_NOOP_S = 10.0


def dvc_bin() -> str:
    return str(Path(sys.executable).parent / "dvc")


def repro_streamed(root: Path, targets: list[str], log: Path, flags: tuple[str, ...] = ()) -> dict:
    """Run `dvc repro [flags] [targets]`, timing each stage from the streamed output; the log is kept."""
    env = env_for(root)
    env["PYTHONUNBUFFERED"] = "1"  # DVC and the stage scripts are Python: line timestamps stay true
    start = time.perf_counter()
    stages: list[list] = []  # [name, started_at]
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen([dvc_bin(), "repro", *flags, *targets], cwd=root, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in proc.stdout:
            now = time.perf_counter() - start
            fh.write(f"[{now:8.2f}] {line}")
            m = RUNNING.search(line)
            if m:
                stages.append([m.group(1), now])
                print(f"  [{now:7.1f} s] {m.group(1)}", flush=True)
        code = proc.wait()
    total = time.perf_counter() - start
    per_stage = {}
    for i, (name, began) in enumerate(stages):
        end = stages[i + 1][1] if i + 1 < len(stages) else total
        per_stage[name] = round(end - began, 2)
    return {"returncode": code, "total_s": round(total, 2), "stages_s": per_stage}


def params_are_default() -> bool:
    from cosalign.core import profiles

    return (REPO / "params.yaml").read_text() == profiles.render("default", REPO)


def noop(root: Path, targets: list[str]) -> tuple[bool, str]:
    proc = subprocess.run([dvc_bin(), "repro", *targets], cwd=root, env=env_for(root), capture_output=True, text=True)
    ran = RUNNING.search(proc.stdout) is not None
    return proc.returncode == 0 and not ran, proc.stdout[-500:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny profile, stages base_model and prompts")
    ap.add_argument("--profile", default=None, help="profiles/<name>.yaml (default: default; quick: tiny)")
    ap.add_argument("--targets", default=None, help="comma-separated dvc repro targets (default: all)")
    ap.add_argument("--repeats", type=int, default=3, help="no-op re-runs; the median counts")
    ap.add_argument("--keep", type=Path, default=None, help="keep the run's copy here instead of a temp dir")
    ap.add_argument("--in-place", action="store_true", help="run in this checkout, every stage forced")
    args = ap.parse_args(argv)
    if args.in_place:
        return report(*in_place(args), args)
    profile = args.profile or ("tiny" if args.quick else "default")
    targets = args.targets.split(",") if args.targets else (["base_model", "prompts"] if args.quick else [])

    with scratch_dir("dvc") as tmp:
        root = args.keep or Path(tmp) / "repo"
        root.mkdir(parents=True, exist_ok=True)
        copy_repo(root, profile)
        if WHEEL.exists():  # ignored by git, needed by the default profile's base_model stage
            (root / WHEEL.relative_to(REPO)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(WHEEL, root / WHEEL.relative_to(REPO))
        log = REPO / "bench" / "results" / f"dvc-{profile}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        print(f"dvc repro {' '.join(targets)} ({profile} profile) in {root}; log: {log.relative_to(REPO)}")
        run = repro_streamed(root, targets, log)
        if run["returncode"] != 0:
            print(log.read_text()[-4000:], file=sys.stderr)
        t = timed(lambda: noop(root, targets), args.repeats)

    return report(profile, targets, run, t, args)


def in_place(args) -> tuple[str, list[str], dict, dict]:
    """The measured run of this checkout: cold (no checkpoints, no run cache), every stage forced."""
    targets = args.targets.split(",") if args.targets else []
    for cached in ("work", "cosalign"):  # resumable checkpoints; the rules judge's fitted classifier
        shutil.rmtree(REPO / ".cache" / cached, ignore_errors=True)
    log = REPO / "bench" / "results" / "dvc-in-place.log"
    print(f"dvc repro --force --no-run-cache {' '.join(targets)} in {REPO}; log: {log.relative_to(REPO)}")
    run = repro_streamed(REPO, targets, log, ("--force", "--no-run-cache"))
    if run["returncode"] != 0:
        print(log.read_text()[-4000:], file=sys.stderr)
    t = timed(lambda: noop(REPO, targets), args.repeats)
    return "params.yaml (in place)", targets, run, t


def report(profile: str, targets: list[str], run: dict, t: dict, args) -> int:
    noop_ok, noop_tail = t["result"]
    figures = [figure("profile", profile), figure("targets", " ".join(targets) or "(all stages)"),
               figure("dvc repro exit code", run["returncode"])]
    figures += [figure(f"stage {name}", s, "s") for name, s in run["stages_s"].items()]
    figures += [figure("dvc repro, total", run["total_s"], "s"),
                figure("dvc repro, no-op re-run (median)", round(t["median_s"], 2), "s"),
                figure("no-op re-run ran no stage", noop_ok)]
    whole = not targets and (profile == "default" or args.in_place and params_are_default())
    targets_rows = [target("full default-profile dvc repro" if whole else f"dvc repro ({profile}, partial)",
                           run["total_s"] if run["returncode"] == 0 else None, TARGET_FULL_S, "<", "s"),
                    target("no-op dvc repro", round(t["median_s"], 2) if noop_ok else None, TARGET_NOOP_S, "<", "s")]
    write_result("dvc", "dvc repro wall time", figures, targets_rows, quick=args.quick,
                 details={"run": run, "noop_runs_s": t["runs_s"], "noop_tail": noop_tail},
                 notes=["Per-stage time: from DVC's 'Running stage' line to the next (command + DVC's "
                        "hashing and lock update for it).",
                        "In place: dvc repro --force --no-run-cache after removing .cache/work and .cache/cosalign: a cold run "
                        "whose dvc.lock is the committed one." if args.in_place else
                        "The copy starts with no DVC cache and no .cache/work checkpoints: a cold run."])
    return 0 if run["returncode"] == 0 and noop_ok else 1


if __name__ == "__main__":
    sys.exit(main())
