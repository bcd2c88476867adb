"""Dry runs estimate calls, tokens and cost before anything is generated or sent, then exit 0
with one line; `cosalign --version`. Judges answer from a real loopback server (tests/openai_server.py)."""

from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from cosalign.cli import main
from cosalign.core.io import write_parquet
from cosalign.judges.estimate import Estimate, message_tokens
from openai_server import OpenAIServer

VERDICT = 'Fine.\n{"risk_categories": [], "addressed": true, "helpfulness": 4}'
LINE = re.compile(r"^dry run: openai:\S+ \S+: (\d+) call\(s\) to make \((\d+) of (\d+) item\(s\) cached\), "
                  r"~([\d,]+) input tokens, <= ([\d,]+) output tokens, (.*); nothing was sent$")


@pytest.fixture
def server():
    with OpenAIServer(responder=lambda body: VERDICT) as s:
        yield s


def test_version(capsys):
    from cosalign import __version__
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"cosalign {__version__}"


def test_eval_dry_run_estimates_before_generating(server, tmp_path, capsys):
    from test_benchmarks import cosapien_dir

    not_a_model = tmp_path / "not-a-model"  # generating would fail on it: nothing may load it
    not_a_model.mkdir()
    rc = main(["eval", "--model", str(not_a_model), "--benchmark", "cosapien",
               "--benchmark-path", str(cosapien_dir(tmp_path / "CoSApien")), "--prompts-per-config", "2",
               "--max-new-tokens", "100", "--judge", "openai", "--judge-option", f"base_url={server.base_url}",
               "--judge-option", "api_key_env=null", "--judge-option", f"cache_dir={tmp_path / 'cache'}",
               "--judge-option", "max_tokens=50", "--dry-run", "--input-price", "2.5", "--output-price", "10"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and server.calls == 0 and len(out) == 1, out
    calls, cached, total, tokens_in, tokens_out, cost = LINE.match(out[0]).groups()
    assert (int(calls), int(cached), int(total)) == (10, 0, 10)  # 5 configs x 2 prompts, free-form
    assert int(tokens_out.replace(",", "")) == 10 * 50
    tokens_in = int(tokens_in.replace(",", ""))
    assert tokens_in > 10 * 100  # each request carries an answer of max_new_tokens at least
    expected = (tokens_in * 2.5 + 500 * 10) / 1e6
    assert cost.startswith(f"cost <= {expected:.4f} at 2.5/10 per million")


def test_eval_judge_option_dry_run_means_the_same(server, tmp_path, capsys):
    from test_benchmarks import cosapien_dir

    rc = main(["eval", "--model", str(tmp_path), "--benchmark", "cosapien",
               "--benchmark-path", str(cosapien_dir(tmp_path / "CoSApien")), "--prompts-per-config", "1",
               "--judge", "openai", "--judge-option", f"base_url={server.base_url}",
               "--judge-option", "api_key_env=null", "--judge-option", f"cache_dir={tmp_path / 'cache'}",
               "--judge-option", "dry_run=true"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and server.calls == 0 and len(out) == 1 and "no price given" in out[0]


def test_eval_dry_run_needs_an_api_judge(tmp_path):
    from test_benchmarks import cosapien_dir

    with pytest.raises(SystemExit, match="needs an API judge"):
        main(["eval", "--model", str(tmp_path), "--benchmark", "cosapien", "--benchmark-path",
              str(cosapien_dir(tmp_path / "CoSApien")), "--judge", "rules", "--dry-run"])


def test_estimate_counts_tokens_and_prices():
    msgs = [{"role": "system", "content": "x" * 40}, {"role": "user", "content": "y" * 9}]
    assert message_tokens(msgs) == (4 + 10) + (4 + 3)
    est = Estimate("openai:m", "response", 3, 1, 4, 1_000_000, 2_000, 2.0, 8.0)
    assert est.max_cost == pytest.approx(2.0 + 0.016)
    assert Estimate("openai:m", "response", 3, 1, 4, 10, 20).max_cost is None


def _stage_project(root, server, n_responses: int, batch: int):
    import json

    from cosalign.cosa.taxonomy import PAPER

    (root / "data").mkdir(parents=True)
    (root / "data" / "taxonomy.json").write_text(json.dumps({"categories": PAPER.as_dicts()}))
    write_parquet(pd.DataFrame({"prompt_id": ["p1", "p2"], "prompt": ["How to cook rice?", "Tell a joke."]}),
                  root / "data" / "prompts.parquet")
    write_parquet(pd.DataFrame({"response_id": [f"r{i}" for i in range(n_responses)],
                                "prompt_id": ["p1", "p2"] * (n_responses // 2),
                                "response": [f"answer number {i}" for i in range(n_responses)]}),
                  root / "data" / "responses.parquet")
    judge = {"name": "openai", "model": "m", "base_url": server.base_url, "api_key_env": None,
             "cache_dir": str(root / "cache"), "dry_run": True, "progress": False,
             "input_price_per_mtok": 1.0, "output_price_per_mtok": 4.0}
    (root / "params.yaml").write_text(yaml.safe_dump({"judgments": {"judge": judge, "work_batch_size": batch}}))


def test_judgments_stage_dry_run_estimates_every_batch_and_exits_0(server, tmp_path, repo_root):
    _stage_project(tmp_path, server, n_responses=6, batch=2)  # three work batches
    proc = subprocess.run([sys.executable, str(repo_root / "stages" / "judgments.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(lines) == 1 and server.calls == 0
    calls, cached, total, *_ = LINE.match(lines[0]).groups()
    assert (int(calls), int(cached), int(total)) == (6, 0, 6)  # the whole run, not the first batch
    assert "cost <= " in lines[0]
    assert not (tmp_path / "data" / "judgments.parquet").exists()


def test_prompt_labels_dry_run_ends_the_stage_with_one_line_and_status_0(server, tmp_path, capsys):
    from cosalign.core.stage import run_stage
    from cosalign.data.judging import label_prompts

    prompts = pd.DataFrame({"prompt_id": ["a", "b", "c"], "prompt": ["one?", "two?", "two?"],
                            "split": ["train"] * 3, "gold_categories": [[], [], []]})
    judge = {"name": "openai", "model": "m", "base_url": server.base_url, "api_key_env": None,
             "cache_dir": str(tmp_path / "cache"), "dry_run": True, "progress": False}
    with pytest.raises(SystemExit) as info:
        run_stage(lambda: label_prompts(prompts, judge))
    lines = capsys.readouterr().out.strip().splitlines()
    assert info.value.code == 0 and server.calls == 0 and len(lines) == 1
    calls, cached, total, *_ = LINE.match(lines[0]).groups()
    assert (int(calls), int(cached), int(total)) == (2, 0, 3)  # the repeated prompt is sent once
