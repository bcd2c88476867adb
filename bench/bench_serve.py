"""`cosalign serve` under load: do small requests stay fast while someone sends an oversized one?

Issue 16 measured a 20 MB request tokenized under the model lock while another tenant's 5-token
request waited 13.8 s. Here a real `cosalign serve` (tiny random model, loopback) gets rounds of
4 keys x 50 concurrent small requests (greedy, max_tokens 8), alternately alone and together with
one 20 MB request sent at the same moment. Figures: the small requests' p95 latency per kind of
round (median over the rounds), the big request's status and latency, and the server's peak RSS.
Target: p95 with the big request <= 2x p95 without it.

    python bench/bench_serve.py [--rounds 2] [--big-mb 20]

Every request goes through the server's whole path (auth, config load and hash, chat rendering,
generation under the model lock), so the small requests' latency is mostly queueing behind each
other: one model answers one request at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, bench_env, figure, scratch_dir, target, tiny_model, write_result  # noqa: E402

KEYS, PER_KEY, MAX_TOKENS = 4, 50, 8
CONFIGS = {"game-studio": ["Violence"], "childrens-publisher": [], "bank-fraud-team": ["Financial Crime and Theft"],
           "privacy-lab": ["Privacy Violations"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setup(root: Path) -> tuple[Path, Path, list[str]]:
    """A registry of 4 approved configs and one key bound to each."""
    from cosalign.serving import keys, lifecycle

    reg, keys_file = root / "safety_configs", root / "keys.yaml"
    issued = []
    for cid, allowed in CONFIGS.items():
        lifecycle.new_config(reg, cid, owner="bench-owner", allowed=allowed)
        lifecycle.review(reg, f"{cid}@1", "bench-reviewer", "benchmark config", "approve")
        lifecycle.approve(reg, f"{cid}@1", reviewer="bench-approver")
        issued.append(keys.add_key(keys_file, f"{cid}@1", configs_dir=reg))
    return reg, keys_file, issued


def _rss_peak_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _post(url: str, key: str, body: bytes) -> tuple[int, float]:
    request = urllib.request.Request(url, data=body, headers={"Authorization": f"Bearer {key}",
                                                              "Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=600) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as err:
        err.read()
        status = err.code
    return status, time.perf_counter() - start


def _round(url: str, keys: list[str], big: bytes | None) -> dict:
    """One round: every small request (and the big one) on its own thread, released together."""
    small = [json.dumps({"model": "tiny", "max_tokens": MAX_TOKENS, "temperature": 0,
                         "messages": [{"role": "user", "content": f"Tenant {k} asks question {i}: "
                                                                  "how do castles keep warm?"}]}).encode()
             for k in range(len(keys)) for i in range(PER_KEY)]
    jobs = [(keys[i // PER_KEY], body) for i, body in enumerate(small)]
    if big is not None:
        jobs.append((keys[0], big))
    start = threading.Barrier(len(jobs))

    def run(job):
        start.wait()
        return _post(url, *job)

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(run, jobs))
    big_result = results.pop() if big is not None else None
    statuses = [s for s, _ in results]
    latencies = sorted(t for _, t in results)
    return {"p95_s": round(latencies[int(0.95 * len(latencies)) - 1], 4),
            "p50_s": round(statistics.median(latencies), 4), "max_s": round(latencies[-1], 4),
            "ok": statuses.count(200), "n": len(statuses),
            "big_status": big_result[0] if big_result else None,
            "big_s": round(big_result[1], 4) if big_result else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2, help="rounds of each kind, alternating")
    ap.add_argument("--big-mb", type=float, default=20.0, help="size of the oversized request")
    ap.add_argument("--quick", action="store_true", help="accepted for run_all.py: always the tiny model")
    args = ap.parse_args(argv)

    with scratch_dir("serve") as tmp:
        root = Path(tmp)
        model = tiny_model(root / "model")
        reg, keys_file, issued = _setup(root)
        port = _free_port()
        log = open(root / "serve.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "cosalign.cli", "serve", "--model", str(model), "--keys", str(keys_file),
             "--configs-dir", str(reg), "--port", str(port), "--max-new-tokens", str(MAX_TOKENS),
             "--served-model-name", "tiny"],
            stdout=log, stderr=subprocess.STDOUT, env=bench_env(), cwd=REPO)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(480):
                if proc.poll() is not None:
                    raise SystemExit(f"cosalign serve exited:\n{(root / 'serve.log').read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(base + "/health", timeout=1):
                        break
                except OSError:
                    time.sleep(0.25)
            url = base + "/v1/chat/completions"
            content = "A" * int(args.big_mb * 2**20)
            big = json.dumps({"model": "tiny", "max_tokens": MAX_TOKENS,
                              "messages": [{"role": "user", "content": content}]}).encode()
            _round(url, issued, None)  # warm-up: first-call costs out of the way
            rss_before = _rss_peak_mb(proc.pid)
            rounds = {"without": [], "with": []}
            for _ in range(args.rounds):
                rounds["without"].append(_round(url, issued, None))
                rounds["with"].append(_round(url, issued, big))
            rss_after = _rss_peak_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()

    p95_without = round(statistics.median(r["p95_s"] for r in rounds["without"]), 4)
    p95_with = round(statistics.median(r["p95_s"] for r in rounds["with"]), 4)
    ratio = round(p95_with / p95_without, 3)
    all_ok = all(r["ok"] == r["n"] for rs in rounds.values() for r in rs)
    big_statuses = sorted({r["big_status"] for r in rounds["with"]})
    figures = [
        figure("small requests per round", KEYS * PER_KEY),
        figure("small-request p95 without the big request (median of rounds)", p95_without, "s"),
        figure("small-request p95 with one oversized request (median of rounds)", p95_with, "s"),
        figure("ratio with / without", ratio, "x"),
        figure("p95 per round without", ", ".join(str(r["p95_s"]) for r in rounds["without"]), "s"),
        figure("p95 per round with", ", ".join(str(r["p95_s"]) for r in rounds["with"]), "s"),
        figure("small requests answered 200", "all" if all_ok else "NOT all"),
        figure(f"oversized request ({args.big_mb:g} MB) status", ", ".join(map(str, big_statuses))),
        figure("oversized request latency (max over rounds)", max(r["big_s"] for r in rounds["with"]), "s"),
        figure("server peak RSS after warm-up / after all rounds",
               f"{rss_before} / {rss_after}", "MB"),
    ]
    targets = [target("small-request p95 with / without the oversized request", ratio, 2.0, "<=", "x")]
    notes = ["Latency counts queueing: the 200 small requests wait for one model, one generation at a "
             "time, so p95 is close to a round's length. The oversized request is refused (413) from "
             "its Content-Length: its body is dropped as it arrives, never parsed or tokenized, and the "
             "model lock is never taken."]
    write_result("serve", f"cosalign serve under load: {KEYS} keys x {PER_KEY} concurrent requests "
                          "+ one oversized request (bench_serve.py)",
                 figures, targets, quick=False, details={"rounds": rounds}, notes=notes)
    return 0 if all_ok and ratio <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
