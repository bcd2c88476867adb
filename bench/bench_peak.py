"""The machine's matmul peak in float32 and bfloat16: the denominator of every MFU figure.

A square `torch.matmul` (2048 x 2048 by default, 2 n^3 FLOPs) with torch using every core the
process may run on, timed as the median of repeats after a warm-up. The bf16 figure is what
native bfloat16 dot products give (AVX-512 BF16 / AMX on CPU, tensor cores on GPU); where bf16
is emulated it comes out slower than float32, and `precision: auto` (cosalign.core.precision)
stays on float32.

    python bench/bench_peak.py            # 2048^2, ~10 s on 2 cores
    python bench/bench_peak.py --quick    # 256^2, a second
Other benches read the result with `peak()` (bench/results/peak.json, measured again when missing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, figure, write_result  # noqa: E402

DTYPES = ("float32", "bfloat16")


def matmul_flops(n: int, dtype: str, device: str = "cpu", repeats: int = 5) -> float:
    """FLOP/s of an n x n matmul (median of `repeats` after one warm-up)."""
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=getattr(torch, dtype))
    b = torch.randn(n, n, generator=g).to(device=device, dtype=getattr(torch, dtype))
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    torch.matmul(a, b)
    sync()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        sync()
        runs.append(time.perf_counter() - start)
    runs.sort()
    return 2 * n ** 3 / runs[len(runs) // 2]


def measure(n: int, device: str = "cpu", repeats: int = 5) -> dict:
    """{dtype: FLOP/s} for float32 and bfloat16."""
    return {d: matmul_flops(n, d, device, repeats) for d in DTYPES}


def peak(device: str = "cpu", name: str | None = None, quick: bool = False) -> dict:
    """{dtype: FLOP/s} from bench/results/<name>.json, measured now when absent."""
    name = name or ("peak" if device == "cpu" else "peak_gpu")
    path = RESULTS / f"{name}.json"
    if path.exists():
        details = json.loads(path.read_text())["details"]
        if details.get("device") == device:
            return details["flops"]
    return measure(256 if quick else 2048, device, 3 if quick else 5)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="256 x 256: a smoke run")
    ap.add_argument("--n", type=int, default=None, help="matrix size (default 2048; quick 256)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--name", default=None, help="results file name (default peak / peak_gpu)")
    args = ap.parse_args(argv)
    n = args.n or (256 if args.quick else 2048)
    flops = measure(n, args.device, args.repeats)
    from cosalign.core.precision import bf16_supported
    figures = [figure("matrix", f"{n} x {n}, {args.device}"),
                figure("float32 matmul peak", round(flops["float32"] / 1e9, 1), "GFLOP/s"),
                figure("bfloat16 matmul peak", round(flops["bfloat16"] / 1e9, 1), "GFLOP/s"),
                figure("bfloat16 / float32", round(flops["bfloat16"] / flops["float32"], 2), "x"),
                figure("native bf16 detected (precision: auto picks bf16)", bf16_supported(args.device))]
    write_result(args.name or ("peak" if args.device == "cpu" else "peak_gpu"), "Matmul peak (MFU denominator)",
                 figures, [], quick=args.quick, details={"device": args.device, "n": n, "flops": flops},
                 notes=["2 n^3 FLOPs per matmul; torch threads = the cores this process may use."])
    return 0


if __name__ == "__main__":
    sys.exit(main())
