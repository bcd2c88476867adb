"""Bad input: every malformed input a stage reads fails with one clear line naming the file, the
row and the field, exit status 2, and the stage's previous output left byte for byte as it was.

The stage scripts run as `__main__` (runpy) in a small work directory, exactly as `python
stages/NAME.py` runs them; a few cases also run as real subprocesses to check the exit status and
that no traceback reaches the user.
"""

from __future__ import annotations

import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cosalign.core import profiles
from cosalign.cli import main as cli_main
from cosalign.core.io import write_json, write_parquet

REPO = Path(__file__).resolve().parent.parent
STAGES = REPO / "stages"
SEED = "data/seed/prompts.jsonl"
PREVIOUS = b"the previous complete artifact"  # whatever was there must survive a failed run


def jsonl(*rows) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def row(pid: str, prompt="How do I bake bread?", gold=None, **extra) -> dict:
    return {"prompt_id": pid, "prompt": prompt, "gold_categories": gold if gold is not None else [], **extra}


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """A directory a stage can run in: the tiny profile's params, the seed prompts and the
    paper's taxonomy (as the taxonomy stage writes it by default)."""
    from cosalign.cosa.taxonomy import PAPER

    (tmp_path / "data/seed").mkdir(parents=True)
    shutil.copy2(REPO / SEED, tmp_path / SEED)
    (tmp_path / "data/taxonomy.json").write_text(json.dumps({"categories": PAPER.as_dicts()}))
    profiles.write("tiny", tmp_path / "params.yaml", root=REPO)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def edit_params(work: Path, section: str, **values) -> None:
    params = yaml.safe_load((work / "params.yaml").read_text())
    for key, value in values.items():
        if value is None:
            params[section].pop(key, None)
        else:
            params[section][key] = value
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def fails_cleanly(stage: str, work: Path, output: str, capsys, *expected: str) -> str:
    """Run the stage over a previous output; it must exit 2 with `error: ...` naming `expected`."""
    target = work / output
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(PREVIOUS)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(STAGES / f"{stage}.py"), run_name="__main__")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err, err
    err = err[err.index("error: "):]  # a progress bar may have drawn before the failure
    assert len(err.strip().splitlines()) == 1, err
    for piece in expected:
        assert piece in err, f"{piece!r} not in {err!r}"
    assert target.read_bytes() == PREVIOUS, "the failed run touched the previous output"
    assert sorted(p.name for p in target.parent.glob(f".{target.name}*")) == []  # no temp left
    return err


# --- the seed prompts file (prompts stage, source type seed) -----------------------------------

SEED_CASES = {
    "empty file": (b"", ["file is empty"]),
    "blank lines only": (b"\n\n", ["has no rows"]),
    "missing column": (jsonl({"prompt_id": "a", "text": "hi"}), ["field 'prompt'", "missing column"]),
    "wrong type": (jsonl(row("a"), row("b", prompt=42)), ["row 2", "field 'prompt'", "must be text, got int"]),
    "empty prompt": (jsonl(row("a"), row("b", prompt="   ")), ["row 2", "field 'prompt'", "empty prompt"]),
    "duplicate id": (jsonl(row("a"), row("b"), row("a", prompt="other")),
                     ["row 3", "field 'prompt_id'", "duplicate id 'a' (first at row 1)"]),
    "missing id": (jsonl(row("a"), {"prompt": "no id here", "gold_categories": []}),
                   ["row 2", "field 'prompt_id'", "missing id"]),
    "unknown category": (jsonl(row("a"), row("b", gold=["Violence", "Sorcery"])),
                         ["row 2", "field 'gold_categories'", "unknown category 'Sorcery'"]),
    "category list as a string": (jsonl(row("a"), row("b", gold="Violence")),
                                  ["row 2", "field 'gold_categories'", "given as a string"]),
    "category list of numbers": (jsonl(row("a"), row("b", gold=[1, 2])),
                                 ["row 2", "field 'gold_categories'", "must be a list of category names"]),
    "non-UTF-8 bytes": (jsonl(row("a"), b'{"prompt_id": "b", "prompt": "caf\xe9"}'),
                        ["row 2", "not valid UTF-8"]),
    "1 MB prompt": (jsonl(row("a"), row("b", prompt="x" * 1_000_000)),
                    ["row 2", "field 'prompt'", "1000000 characters (limit 4000)"]),
    "invalid JSON": (jsonl(row("a"), b'{"prompt_id": "b", "prompt": '), ["row 2", "invalid JSON"]),
    "line not an object": (jsonl(row("a"), b'["b", "hi"]'), ["row 2", "must be a JSON object"]),
}


@pytest.mark.parametrize("case", list(SEED_CASES))
def test_bad_seed_file(case, work, capsys):
    content, expected = SEED_CASES[case]
    (work / SEED).write_bytes(content)
    fails_cleanly("prompts", work, "data/prompts.parquet", capsys, SEED, *expected)


# --- a local prompt file (prompts stage, source type file) -------------------------------------

def use_file(work: Path, name: str, **columns) -> Path:
    edit_params(work, "prompts", sources=[{"type": "file", "name": "mine", "file": f"data/{name}",
                                           "columns": columns}])
    return work / "data" / name


CSV_COLUMNS = {"id": "id", "prompt": "text", "gold_categories": "cats"}
CSV_CASES = {
    # CSV row 1 is the header, so the second data row is row 3, as an editor shows it
    "duplicate id": ("id,text,cats\na,hi,[]\na,ho,[]\n", ["row 3", "field 'id'", "duplicate id"]),
    "empty prompt": ("id,text,cats\na,hi,[]\nb,,[]\n", ["row 3", "field 'text'", "empty prompt"]),
    "categories not JSON": ('id,text,cats\na,hi,[]\nb,ho,"Violence, Hate"\n',
                            ["row 3", "field 'cats'", "not a JSON list"]),
    "unknown category": ('id,text,cats\na,hi,"[""Sorcery""]"\n', ["row 2", "field 'cats'", "unknown category"]),
    "mapped column missing": ("id,prompt,cats\na,hi,[]\n", ["field 'text'", "missing column"]),
    "header only": ("id,text,cats\n", ["has no rows"]),
}


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_bad_local_csv(case, work, capsys):
    text, expected = CSV_CASES[case]
    path = use_file(work, "mine.csv", **CSV_COLUMNS)
    path.write_text(text, encoding="utf-8")
    fails_cleanly("prompts", work, "data/prompts.parquet", capsys, "data/mine.csv", *expected)


def test_non_utf8_csv(work, capsys):
    path = use_file(work, "mine.csv", **CSV_COLUMNS)
    path.write_bytes(b"id,text,cats\na,hi,[]\nb,caf\xe9,[]\n")
    fails_cleanly("prompts", work, "data/prompts.parquet", capsys, "data/mine.csv", "row 3", "UTF-8")


@pytest.mark.parametrize("frame, expected", [
    (pd.DataFrame({"id": ["a", "b"], "prompt": [5, 7]}), ["row 1", "field 'prompt'", "must be text, got int"]),
    (pd.DataFrame({"id": ["a"], "prompt": ["hi"], "g": ["Violence"]}), ["row 1", "field 'g'", "given as a string"]),
])
def test_bad_local_parquet(frame, expected, work, capsys):
    path = use_file(work, "mine.parquet", id="id", prompt="prompt", gold_categories="g")
    write_parquet(frame, path)
    fails_cleanly("prompts", work, "data/prompts.parquet", capsys, "data/mine.parquet", *expected)


def test_unsupported_and_missing_files(work, capsys):
    path = use_file(work, "mine.xlsx")
    path.write_bytes(b"PK\x03\x04")
    fails_cleanly("prompts", work, "data/prompts.parquet", capsys, "data/mine.xlsx", "unsupported file type")
    path.unlink()
    fails_cleanly("prompts", work, "data/prompts.parquet", capsys, "data/mine.xlsx", "does not exist")


# --- params values ------------------------------------------------------------------------------

PARAMS_CASES = {
    "seed as text": ("prompts", {"seed": "zero"}, ["field 'prompts.seed'", "expected int, got str 'zero'"]),
    "seed as bool": ("prompts", {"seed": True}, ["field 'prompts.seed'", "expected int"]),
    "missing key": ("prompts", {"test_fraction": None}, ["field 'prompts.test_fraction'", "missing value"]),
    "out of range": ("prompts", {"test_fraction": 1.5}, ["field 'prompts.test_fraction'", "[0, 1)"]),
    "sources as a string": ("prompts", {"sources": SEED}, ["field 'prompts.sources'", "expected list"]),
    "source without file": ("prompts", {"sources": [{"type": "file"}]},
                            ["field 'prompts.sources[0].file'", "missing value"]),
    "unknown source type": ("prompts", {"sources": [{"type": "excel", "file": SEED}]},
                            ["field 'prompts.sources[0].type'", "unknown source type 'excel'"]),
    "columns as a list": ("prompts", {"sources": [{"type": "file", "file": SEED, "columns": ["id"]}]},
                          ["field 'prompts.sources[0].columns'"]),
    "zero batch": ("responses", {"work_batch_size": 0}, ["field 'responses.work_batch_size'", "at least 1"]),
    "temperature as text": ("responses", {"temperature": "hot"},
                            ["field 'responses.temperature'", "expected int or float"]),
    "batch size as text": ("judgments", {"work_batch_size": "8"},
                           ["field 'judgments.work_batch_size'", "expected int, got str"]),
    "modes as a string": ("configs", {"modes": "exact_match"}, ["field 'configs.modes'", "expected list"]),
    "unknown judge": ("judgments", {"judge": {"name": "gpt4"}}, ["field 'judgments.judge.name'", "unknown judge 'gpt4'"]),
    "misspelt judge option": ("prompt_labels", {"judge": {"name": "openai", "temprature": 0}},
                              ["field 'prompt_labels.judge'", "unknown option(s) ['temprature']"]),
    "judge as a string": ("judgments", {"judge": "rules"}, ["field 'judgments.judge'", "expected dict"]),
}
OUTPUT = {"prompts": "data/prompts.parquet", "responses": "data/responses.parquet",
          "judgments": "data/judgments.parquet", "configs": "data/configs.parquet",
          "prompt_labels": "data/prompt_labels.parquet"}


@pytest.mark.parametrize("case", list(PARAMS_CASES))
def test_bad_params_value(case, work, capsys):
    stage, values, expected = PARAMS_CASES[case]
    edit_params(work, stage, **values)
    fails_cleanly(stage, work, OUTPUT[stage], capsys, "params.yaml", *expected)


@pytest.mark.parametrize("text, expected", [
    ("prompts: [unclosed\n", "invalid YAML"),
    ("", "must be a mapping of stage sections"),
    ("configs: {seed: 0}\n", "field 'prompts': missing section"),
])
def test_bad_params_file(text, expected, work, capsys):
    (work / "params.yaml").write_text(text)
    fails_cleanly("prompts", work, "data/prompts.parquet", capsys, "params.yaml", expected)


def test_judge_key_variable_unset(work, capsys, monkeypatch):
    """An API judge without its key stops before any call, naming the variable (never a value)."""
    write_parquet(pd.DataFrame({"response_id": ["r"], "prompt_id": ["p"], "config_id": ["c"], "sample": [0],
                                "response": ["ok"], "generator": ["g"], "source": ["model"]}),
                  work / "data/responses.parquet")
    write_parquet(pd.DataFrame({"prompt_id": ["p"], "prompt": ["hi"]}), work / "data/prompts.parquet")
    monkeypatch.delenv("COSALIGN_RELIABILITY_UNSET_KEY", raising=False)
    edit_params(work, "judgments", judge={"name": "openai", "base_url": "http://127.0.0.1:9/v1",
                                          "api_key_env": "COSALIGN_RELIABILITY_UNSET_KEY",
                                          "cache_dir": ".cache/j"})
    fails_cleanly("judgments", work, "data/judgments.parquet", capsys,
                  "environment variable COSALIGN_RELIABILITY_UNSET_KEY", "is not set")


# --- as real processes: exit status, one line, no traceback -----------------------------------

@pytest.mark.parametrize("stage, setup, expected", [
    ("prompts", lambda w: (w / SEED).write_bytes(jsonl(row("a"), row("b", gold="Violence"))),
     f"error: {SEED}, row 2, field 'gold_categories': category list given as a string"),
    ("responses", lambda w: edit_params(w, "responses", samples=0),
     "error: params.yaml, field 'responses.samples': must be at least 1"),
    ("configs", lambda w: None, "error: data/prompts.parquet: file does not exist"),
])
def test_stage_process_exits_2_with_one_line(stage, setup, expected, work):
    setup(work)
    (work / OUTPUT[stage]).parent.mkdir(parents=True, exist_ok=True)
    (work / OUTPUT[stage]).write_bytes(PREVIOUS)
    proc = subprocess.run([sys.executable, str(STAGES / f"{stage}.py")], cwd=work,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == expected or proc.stderr.startswith(expected), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert (work / OUTPUT[stage]).read_bytes() == PREVIOUS


# --- the taxonomy and pulled datasets (cosalign validate) --------------------------------------

def good_taxonomy() -> dict:
    from cosalign.cosa import taxonomy

    return {"categories": [{"name": c.name, "description": c.description, "seen": c.name in taxonomy.SEEN,
                            "allowable": c.name != taxonomy.OTHER} for c in taxonomy.CATEGORIES]}


def validate_cli(path: Path, capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli_main(["validate", str(path), *args])
    return code, capsys.readouterr().err


def _drop_key(obj, i, key):
    del obj["categories"][i][key]
    return obj


TAXONOMY_CASES = {
    "empty file": (b"", ["cannot be read as JSON"]),
    "non-UTF-8 bytes": (b'{"categories": "\xff"}', ["cannot be read as JSON", "utf-8"]),
    "truncated JSON": (json.dumps(good_taxonomy()).encode()[:-20], ["cannot be read as JSON"]),
    "categories as a string": ({"categories": "Violence, Hate"}, ["field 'categories'"]),
    "category without description": (lambda: _drop_key(good_taxonomy(), 2, "description"),
                                      ["row 2", "field 'description'", "missing key"]),
    "a paper category missing": (lambda: {"categories": good_taxonomy()["categories"][1:]},
                                 ["field 'categories'", "categories are missing"]),
    "Other Harms allowable": (lambda: {"categories": [dict(c, allowable=True) for c in good_taxonomy()["categories"]]},
                              ["field 'allowable'", "never be allowable"]),
}


@pytest.mark.parametrize("case", list(TAXONOMY_CASES))
def test_bad_taxonomy(case, tmp_path, capsys):
    content, expected = TAXONOMY_CASES[case]
    content = content() if callable(content) else content
    path = tmp_path / "taxonomy.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write_json(content, path)
    code, err = validate_cli(path, capsys)
    assert code == 2 and err.startswith(f"error: {path}"), err
    for piece in expected:
        assert piece in err, f"{piece!r} not in {err!r}"


def test_good_taxonomy_passes(tmp_path, capsys):
    write_json(good_taxonomy(), tmp_path / "taxonomy.json")
    assert validate_cli(tmp_path / "taxonomy.json", capsys)[0] == 0


def pulled_judgments() -> pd.DataFrame:
    return pd.DataFrame({"response_id": ["r1", "r2", "r2"], "risk_categories": ["Violence", "Violence", ""],
                         "addressed": [True, False, True], "helpfulness": [3, 9, 0],
                         "valid": [True, True, False], "judge": "openai:x", "raw": ["", "", ""]})


def test_pulled_dataset_failing_its_schema(tmp_path, capsys):
    path = tmp_path / "judgments.parquet"
    write_parquet(pulled_judgments(), path)
    code, err = validate_cli(path, capsys)
    assert code == 2 and str(path) in err
    assert "row 1, column 'risk_categories'" in err      # a category list given as a string
    assert "row 1, column 'helpfulness'" in err          # 9 is outside 0..5
    assert "column 'response_id'" in err                 # duplicate id


@pytest.mark.parametrize("damage", ["truncated", "not parquet", "empty"])
def test_damaged_pulled_parquet(damage, tmp_path, capsys):
    path = tmp_path / "judgments.parquet"
    write_parquet(pulled_judgments().head(1), path)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "not parquet": b"<html>rate limited</html>",
                      "empty": b""}[damage])
    code, err = validate_cli(path, capsys)
    assert code == 2 and err.startswith(f"error: {path}") and "parquet" in err, err


def test_pulled_dataset_missing_a_column(tmp_path, capsys):
    path = tmp_path / "judgments.parquet"
    write_parquet(pulled_judgments().drop(columns=["valid"]).head(1), path)
    code, err = validate_cli(path, capsys)
    assert code == 2 and "'valid'" in err, err
