"""Compute precision: the top-level `precision: auto | bf16 | fp32` of params.yaml, resolved per run.

`bf16` computes in bfloat16 where the hardware does it natively: training under bf16 autocast with
float32 master weights (so the paper's small learning rates, arXiv 2410.08968 sec. 5, still move
the weights), generation and embedding with bfloat16 weights. `auto` picks bf16 when the device
supports it (CPU: AVX-512 BF16 or AMX; CUDA: torch.cuda.is_bf16_supported()) and float32 otherwise.
`fp32` is the float32 computation of earlier releases, unchanged. Checkpoints and generations
made in bf16 may differ between CPU types (the kernels' rounding differs); the resolved choice is
recorded in every run's metadata so a result can be traced to it.
"""

from __future__ import annotations

from pathlib import Path

from cosalign.core.io import InputError

SETTINGS = ("auto", "bf16", "fp32")
CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bfloat16 dot products


def check(setting, path="params.yaml") -> str:
    """`setting` if valid, else an InputError naming the top-level `precision` key."""
    if isinstance(setting, str) and setting in SETTINGS:
        return setting
    raise InputError(path, f"must be one of {list(SETTINGS)}, got {setting!r}", field="precision")


def cpu_bf16_supported(cpuinfo: str | None = None) -> bool:
    """True where the CPU has native bfloat16 arithmetic (not emulated, which is slower than fp32)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    flags = set(cpuinfo.split())
    if any(f in flags for f in CPU_FLAGS):
        return True
    try:  # macOS / no /proc: torch's own dispatch level (AVX512 alone does not imply bf16)
        import torch
        return torch.backends.cpu.get_cpu_capability() in ("AMX", "AVX512_BF16")
    except Exception:  # noqa: BLE001 - detection must never fail a run
        return False


def bf16_supported(device: str = "cpu") -> bool:
    import torch
    if str(device).startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return cpu_bf16_supported()


def resolve(setting: str, device: str = "cpu") -> str:
    """'bf16' or 'fp32' for this machine. `bf16` is honoured as asked (emulated where unsupported)."""
    check(setting)
    if setting == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return setting


def torch_dtype_name(resolved: str) -> str:
    """The weights' dtype for inference (generation, embedding) under a resolved precision."""
    return {"bf16": "bfloat16", "fp32": "float32"}[resolved]


def from_params(params: dict | None, device: str = "cpu") -> dict:
    """The setting and its resolution from a loaded params.yaml (missing key = fp32, as before)."""
    setting = check((params or {}).get("precision", "fp32"))
    return {"setting": setting, "resolved": resolve(setting, device), "device": device}


def top_level(path="params.yaml", device: str = "cpu") -> dict:
    """`from_params` of the params file at `path`."""
    from cosalign.core.params import load_params
    return from_params(load_params(path), device)


def generator_options(backend: str, options: dict | None, resolved: str) -> dict:
    """The generator's options with the dtype the resolved precision implies. An explicit
    `dtype` in the options wins; fp32 leaves the options as they were (float32 by default)."""
    options = dict(options or {})
    if backend == "transformers" and resolved == "bf16" and "dtype" not in options:
        options["dtype"] = "bfloat16"
    return options


def label(options: dict | None) -> str:
    """A suffix for the generator column: '@bf16' for bfloat16 weights, '' for float32 (as before)."""
    dtype = (options or {}).get("dtype", "float32")
    return "" if dtype == "float32" else "@" + {"bfloat16": "bf16", "float16": "fp16"}.get(dtype, dtype)
