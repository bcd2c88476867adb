"""The benchmark tools run end to end on the tiny model (smoke runs: the timings mean nothing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _env(results: Path) -> dict:
    env = dict(os.environ, COSALIGN_BENCH_RESULTS=str(results), HF_HUB_OFFLINE="1", PYTHON=sys.executable)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO / "bench"), env.get("PYTHONPATH", "")])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _figures(path: Path) -> dict:
    return {f["name"]: f["value"] for f in json.loads(path.read_text())["figures"]}


def test_peak_reports_float32_and_bf16_flops(tmp_path):
    subprocess.run([sys.executable, "bench/bench_peak.py", "--quick"], cwd=REPO, env=_env(tmp_path), check=True,
                   timeout=300)
    result = json.loads((tmp_path / "peak.json").read_text())
    assert result["details"]["flops"]["float32"] > 0 and result["details"]["flops"]["bfloat16"] > 0
    assert "bfloat16 / float32" in _figures(tmp_path / "peak.json")


def test_profile_step_splits_one_training_step(tmp_path):
    subprocess.run([sys.executable, "bench/profile_step.py", "--quick", "--batch", "2"], cwd=REPO,
                   env=_env(tmp_path), check=True, timeout=600)
    res = json.loads((tmp_path / "profile_sft_bf16.json").read_text())["details"]
    split = res["split_s"]
    assert set(split) == {"matmul", "attention", "optimizer", "collation", "other ops", "python"}
    assert split["matmul"] > 0 and split["optimizer"] > 0
    assert sum(split.values()) == pytest.approx(max(res["wall_s"], sum(split.values()) - split["python"]), rel=1e-6)


def test_gpu_script_runs_tiny_on_cpu_and_writes_its_figures(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", "bench/gpu.sh", "--tiny", "--out", str(out), "--wheels", str(tmp_path / "none")],
                          cwd=REPO, env=_env(out), capture_output=True, text=True, timeout=1300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    log = (out / "gpu.log").read_text()
    assert "vLLM is not installed here: skipped" in log or "backend vllm" in log
    assert "failed" not in log, log
    training = json.loads((out / "training_gpu.json").read_text())
    rows = training["details"]["summary"]
    assert rows["sft/project"]["mfu"] > 0 and rows["dpo/project"]["tokens_per_s"] > 0
    assert training["details"]["raw"]["sft/project"]["bf16"] is True
    assert any(k.startswith("physical limit") for k in _figures(out / "training_gpu.json"))
    generation = json.loads((out / "generation_gpu.json").read_text())["details"]
    assert generation["batch_4"]["dtype"] == "bfloat16" and generation["batch_4"]["mfu"] > 0
    assert (out / "summary.md").read_text().strip()


def test_every_bench_script_imports():
    """A bench script is run on demand, not by CI: an import the library no longer offers would go
    unnoticed until someone needs the figure (bench/category_scope.py once did)."""
    code = ("import importlib.util, pathlib, sys\n"
            "for path in sorted(pathlib.Path('bench').glob('*.py')):\n"
            "    spec = importlib.util.spec_from_file_location('bench_' + path.stem, path)\n"
            "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(REPO / ".cache" / "unused"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_gpu_reading_is_drawn_from_the_results_and_only_where_it_holds():
    sys.path.insert(0, str(REPO / "bench"))
    import run_all

    def results(mfu: float) -> dict:
        machine = {"date": "2026-11-30", "gpu": "NVIDIA H200"}
        train = {"machine": machine, "figures": [{"name": "batch size", "value": 8},
                                                 {"name": "parameters N (6 N FLOPs per trained token)", "value": 134515008}],
                 "targets": [{"name": "SFT MFU of project (of the bf16 peak)", "value": mfu}]}
        gen = {"machine": machine, "figures": [{"name": "vLLM", "value": 9000.0}]}
        return {"training_gpu": train, "generation_gpu": gen}

    bound = run_all.gpu_summary(results(0.02))
    assert "at 135M parameters and batch 8" in bound and "the NVIDIA H200 waits on launches" in bound
    assert "MFU stays at 2% or less" in bound and "vLLM's figures are in the table above" in bound
    assert "What limits it" not in run_all.gpu_summary(results(0.4))  # not launch-bound: no such claim
