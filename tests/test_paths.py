"""One path map (issue #13 item 3): cosalign.core.paths names every artifact path, nothing else does,
and dvc.yaml's outs are the map's paths."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from cosalign.core import paths

REPO = Path(__file__).resolve().parent.parent
PATH_MAP = REPO / "src/cosalign/core/paths.py"
ARTIFACT_PATH = re.compile(r"^(\./)?(data|models|reports)/")
# Map entries that are inputs kept in git or scratch space, not stage outputs.
NOT_OUTPUTS = {"SEED_PROMPTS", "SEED_FEWSHOT", "JUDGE_TRAIN", "JUDGE_EVAL", "WORK_ROOT"}
# Map entries that are folders a stage writes several outputs into.
OUTPUT_DIRS = {"TRAIN_REPORTS", "EVAL_DIR", "PLOTS_DIR"}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the module, class and function docstring nodes (prose, not paths the code uses)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def artifact_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string constant in `path` that spells out a data/, models/ or
    reports/ path, f-string parts included, docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skip = _docstrings(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in skip and ARTIFACT_PATH.match(node.value)]


def test_no_artifact_path_outside_the_map():
    files = sorted((REPO / "src").rglob("*.py")) + sorted((REPO / "stages").glob("*.py"))
    assert len(files) > 40
    found = [f"{f.relative_to(REPO)}:{line}: {text!r}" for f in files if f != PATH_MAP
             for line, text in artifact_literals(f)]
    assert not found, "artifact paths spelled out outside cosalign.core.paths:\n" + "\n".join(found)


def test_the_check_sees_literals(tmp_path):
    """The scan finds plain and f-string paths and ignores docstrings."""
    src = tmp_path / "m.py"
    src.write_text('"""Writes data/x.parquet."""\nA = "data/x.parquet"\nB = f"reports/eval/{A}.parquet"\n'
                   'def f():\n    """models/base."""\n    return "./models/sft"\n')
    assert [t for _, t in artifact_literals(src)] == ["data/x.parquet", "reports/eval/", "./models/sft"]


def map_entries() -> dict[str, str]:
    return {k: v for k, v in vars(paths).items() if k.isupper() and isinstance(v, str)}


def dvc_outputs() -> dict[str, str]:
    """Every path dvc.yaml's stages write (outs, metrics, plots) -> the stage writing it;
    foreach stages keep their ${key} placeholder."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        for kind in ("outs", "metrics", "plots"):
            for entry in body.get(kind, []):
                out[next(iter(entry)) if isinstance(entry, dict) else entry] = name
    return out


def test_dvc_outs_are_the_maps_paths():
    entries = map_entries()
    outputs = dvc_outputs()
    files = {v for k, v in entries.items() if k not in NOT_OUTPUTS | OUTPUT_DIRS}
    dirs = {entries[k] for k in OUTPUT_DIRS}
    allowed = files | dirs | {paths.eval_items("${key}")}  # a folder may be an out itself (reports/plots)
    stray = [p for p in outputs if p not in allowed and not any(p.startswith(d + "/") for d in dirs)]
    assert not stray, f"dvc.yaml writes paths the map does not name: {stray}"
    unwritten = [p for p in files if p not in outputs]
    unwritten += [d for d in dirs if not any(p == d or p.startswith(d + "/") for p in outputs)]
    assert not unwritten, f"the map names outputs no dvc.yaml stage writes: {unwritten}"
    for artifact in paths.ALL.values():
        assert outputs[artifact.path] == artifact.stage, artifact


@pytest.mark.parametrize("name", sorted(NOT_OUTPUTS - {"WORK_ROOT"}))
def test_seed_inputs_exist(name):
    assert (REPO / getattr(paths, name)).exists()
