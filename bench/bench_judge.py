"""Judge throughput: the openai backend against a local OpenAI-compatible server with fixed latency.

tests/openai_server.py serves /v1/chat/completions on 127.0.0.1 and sleeps `--latency-ms` per
request (a stand-in for a remote API's round trip). The same items are judged by OpenAIJudge
with concurrency 1 (sequential) and with concurrency 16, each into a fresh cache; then a fresh
judge on the concurrent run's cache judges them again, which must send no request at all.

    python bench/bench_judge.py            # 64 items, 200 ms latency (~20 s)
    python bench/bench_judge.py --quick    # 16 items, 50 ms
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, figure, scratch_dir, target, timed, write_result  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))  # tests/ is not a package
from openai_server import OpenAIServer  # noqa: E402

VERDICT = 'Explains the request.\n{"risk_categories": ["Violence"], "addressed": true, "helpfulness": 3}'
TARGET_SPEEDUP = 8.0


def items(n: int) -> list[tuple[str, str]]:
    """n distinct (prompt, response) items from the seed prompts (distinct requests: no dedup)."""
    from synthetic import answer, seed_rows

    rows = seed_rows()
    return [(rows[i % len(rows)]["prompt"], answer(rows[i % len(rows)]["prompt"], 40) + f" (variant {i})")
            for i in range(n)]


def judge(server: OpenAIServer, cache_dir: Path, concurrency: int):
    from cosalign.judges import make_judge

    return make_judge({"name": "openai", "model": "bench-model", "base_url": server.base_url,
                       "api_key_env": None, "concurrency": concurrency, "cache_dir": str(cache_dir),
                       "max_retries": 0, "progress": False})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--items", type=int, default=None, help="default 64 (quick: 16)")
    ap.add_argument("--latency-ms", type=float, default=None, help="default 200 (quick: 50)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    n = args.items or (16 if args.quick else 64)
    latency = (args.latency_ms or (50 if args.quick else 200)) / 1000
    work = items(n)

    with scratch_dir("judge") as tmp, OpenAIServer(responder=lambda body: VERDICT, latency_s=latency) as server:
        tmp = Path(tmp)
        runs = {"n": 0}

        def fresh(concurrency):
            def once():  # a fresh cache each repeat, so every item is a real request
                runs["n"] += 1
                cache = tmp / f"cache-{concurrency}-{runs['n']}"
                return cache, judge(server, cache, concurrency).judge_responses(work)
            return once

        seq = timed(fresh(1), 1 if not args.quick else args.repeats)  # n x latency: once is enough
        conc = timed(fresh(args.concurrency), args.repeats)
        cache, first = conc["result"]
        max_in_flight = server.max_in_flight
        before = server.calls
        again = timed(lambda: judge(server, cache, args.concurrency).judge_responses(work), args.repeats)
        rerun_calls = server.calls - before

    valid = sum(v.valid for v in first)
    same = again["result"] == first
    seq_rate, conc_rate = n / seq["median_s"], n / conc["median_s"]
    cache_hits = (n - rerun_calls) / n
    figures = [figure("items", n), figure("server latency", round(latency * 1000), "ms"),
               figure("sequential (concurrency 1)", round(seq_rate, 2), "items/s"),
               figure(f"concurrency {args.concurrency}", round(conc_rate, 2), "items/s"),
               figure("speedup", round(conc_rate / seq_rate, 2), "x"),
               figure("most requests in flight at once", max_in_flight),
               figure("re-run from cache", round(n / again["median_s"], 1), "items/s"),
               figure("server calls during the re-run", rerun_calls),
               figure("valid verdicts", f"{valid}/{n}"),
               figure("re-run verdicts identical", same)]
    targets = [target(f"concurrency {args.concurrency} vs sequential throughput", round(conc_rate / seq_rate, 2),
                      TARGET_SPEEDUP, ">=", "x"),
               target("cache hits on a re-run", round(cache_hits * 100, 1), 100.0, "==", "%")]
    write_result("judge", "Judge throughput (openai backend, local server)", figures, targets,
                 quick=args.quick, details={"sequential": {k: v for k, v in seq.items() if k != "result"}, "concurrent": {k: v for k, v in conc.items()
                                                                              if k != "result"},
                                            "rerun": {k: v for k, v in again.items() if k != "result"}},
                 notes=["tests/openai_server.py: a threaded stdlib HTTP server; each request sleeps the latency."])
    return 0 if valid == n and same else 1


if __name__ == "__main__":
    sys.exit(main())
