"""Honest dependencies (issue #13 item 2): each dvc.yaml stage lists exactly the files it uses.

What a stage uses is derived from the code by tests/dvc_deps.py (its docstring has the rules):
the script's import closure within `cosalign`, the resources those modules open, and the data
files its script and params name. `python tests/dvc_deps.py` prints the deps to paste.
"""

from __future__ import annotations

import ast

import pytest
import yaml

import dvc_deps as D

STAGES = D.dvc_stages()


def listed(name: str) -> list[str]:
    return STAGES[name].get("do", STAGES[name]).get("deps", [])


def covers(dep: str, path: str) -> bool:
    return path == dep or path.startswith(dep.rstrip("/") + "/")


@pytest.fixture(scope="module")
def params():
    return D.all_params()


@pytest.mark.parametrize("name", list(STAGES))
def test_every_used_file_is_a_dep(name, params):
    used = D.used_files(name, STAGES[name], params)
    deps = [d for d in listed(name) if "${" not in d]
    item_deps = D.foreach_item_deps(STAGES[name])
    per_item = set()
    if item_deps:  # ${item.checkpoint}: each item's checkpoint is that item's dep
        per_item = {D.repo_path((item or {}).get(d.split("${item.")[1].rstrip("}")))
                    for d in item_deps for p in params
                    for item in ((p.get(name) or {}).get("models") or {}).values()}
    missing = sorted(f for kind in used.values() for f in kind
                     if f not in per_item and not any(covers(d, f) for d in deps))
    assert not missing, f"{name} uses files its dvc.yaml deps miss: {missing}\n" \
                        f"(regenerate with `python tests/dvc_deps.py {name}`)"


@pytest.mark.parametrize("name", list(STAGES))
def test_every_dep_is_used(name, params):
    used = set().union(*D.used_files(name, STAGES[name], params).values())
    unused = [d for d in listed(name) if "${" not in d and not any(covers(d, f) for f in used)]
    assert not unused, f"{name} lists deps it never uses: {unused}"


@pytest.mark.parametrize("name", list(STAGES))
def test_folder_deps_hold_only_used_files(name, params):
    """A folder dep hashes every file in it: only list one whose tracked files the stage all uses."""
    used = set().union(*D.used_files(name, STAGES[name], params).values())
    for dep in listed(name):
        inside = {t for t in D.tracked() if t.startswith(dep + "/") and (D.REPO / t).is_file()}
        if dep in D.OPTION_DIRS.values():
            continue
        spare = sorted(f for f in inside if not any(covers(u, f) for u in used))
        assert not spare, f"{name}: folder dep {dep} also hashes {spare}; list the used files instead"


@pytest.mark.parametrize("name", list(STAGES))
def test_dvc_yaml_matches_the_generator(name, params):
    assert listed(name) == D.exact_deps(name, STAGES[name], params)


def test_pycache_is_ignored_by_dvc():
    assert "__pycache__" in (D.REPO / ".dvcignore").read_text().split()


def test_closure_follows_function_level_and_string_imports(tmp_path, monkeypatch):
    """The walk sees imports inside functions, relative imports, and importlib targets in strings."""
    script = D.REPO / "stages" / "report.py"
    closure = D.module_closure(script.relative_to(D.REPO).as_posix())
    assert "cosalign.evaluation.report" in closure and "cosalign" in closure
    base = D.module_file("cosalign.judges.base")
    found = D.imported_modules(base, "cosalign.judges.base")
    assert {"cosalign.judges.rules", "cosalign.judges.openai_judge", "cosalign.judges.local"} <= found
    src = tmp_path / "s.py"
    src.write_text("def f():\n    from cosalign.core import rng\n    import cosalign.cosa.intervals\n")
    assert {"cosalign.core", "cosalign.core.rng", "cosalign.cosa.intervals"} <= D.imported_modules(src, None)


def test_library_modules_take_input_paths_as_arguments():
    """A library module naming a path-map entry is listed, with the reason it is not an input."""
    naming = set()
    for path in sorted((D.SRC / "cosalign").rglob("*.py")):
        name = ".".join(path.relative_to(D.SRC).with_suffix("").parts).removesuffix(".__init__")
        if name == "cosalign.core.paths":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(n, ast.ImportFrom) and (n.module == "cosalign.core.paths" or n.module == "cosalign.core"
                                                  and any(a.name == "paths" for a in n.names))
               for n in ast.walk(tree)):
            naming.add(name)
    assert naming == set(D.LIBRARY_PATH_USES)


def test_resource_table_is_complete():
    """Every module that opens a package resource is in RESOURCES."""
    opening = set()
    for path in sorted((D.SRC / "cosalign").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if "resources.files(" in text:
            opening.add(".".join(path.relative_to(D.SRC).with_suffix("").parts))
    assert opening == set(D.RESOURCES)
    for entry in D.RESOURCES.values():
        for f in entry(D.all_params()) if callable(entry) else entry:
            assert (D.REPO / f).is_file(), f


def test_a_folder_the_script_names_counts_only_the_files_params_choose():
    """judge_quality names paths.JUDGE_EVAL but reads one split's files (MAP_FOLDER_FILES), and its
    judge is prompt_labels' (JUDGE_SECTION): the rules judge's fitting files are its inputs."""
    stage = D.dvc_stages()["judge_quality"]
    params = [{"judge_quality": {"split": "dev"}, "prompt_labels": {"judge": {"name": "rules"}}}]
    assert D.used_files("judge_quality", stage, params)["data"] == {
        "data/judge_eval/prompts_dev.jsonl", "data/judge_eval/triples_dev.jsonl",
        "data/judge_train/prompts.jsonl", "data/prompts.parquet"}


# -- the committed dvc.lock is the one a fresh clone reproduces --------------------------------------

def _lock() -> dict:
    return yaml.safe_load((D.REPO / "dvc.lock").read_text(encoding="utf-8"))["stages"]


def test_lock_holds_exactly_the_stages_of_the_shipped_params():
    """A profile switch leaves the lock entries of foreach items the new params drop (a tiny run's
    evaluate@base_ica_5shot): they describe no stage and make the lock disagree with dvc.yaml."""
    shipped = yaml.safe_load((D.REPO / "params.yaml").read_text(encoding="utf-8"))
    expected = set()
    for name, stage in STAGES.items():
        if "foreach" in stage:  # `${section.key}` -> that mapping's keys
            section, key = stage["foreach"].strip("${}").split(".")
            expected |= {f"{name}@{item}" for item in shipped[section][key]}
        else:
            expected.add(name)
    assert set(_lock()) == expected


def test_folder_deps_of_stage_outputs_count_only_the_shipped_outputs():
    """report's dep reports/eval is a folder of evaluate@MODEL outputs: its locked hash must cover
    exactly those files (and the folder's tracked .gitignore), not a stray one a fresh clone lacks."""
    lock = _lock()
    outs = {o["path"]: o for entry in lock.values() for o in entry.get("outs", [])}
    checked = 0
    for name, entry in lock.items():
        for dep in entry.get("deps", []):
            inner = {p: o for p, o in outs.items() if p.startswith(dep["path"] + "/")}
            if not inner:
                continue
            tracked = [t for t in D.tracked() if t.startswith(dep["path"] + "/")]
            want_size = sum(o["size"] for o in inner.values()) + sum((D.REPO / t).stat().st_size for t in tracked)
            assert (dep.get("nfiles"), dep["size"]) == (len(inner) + len(tracked), want_size), \
                f"{name}: dvc.lock's {dep['path']} hashed files other than {sorted(inner)} + {tracked}"
            checked += 1
    assert checked, "no stage depends on a folder of other stages' outputs any more: drop this test"
