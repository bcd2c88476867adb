"""The files each dvc.yaml stage uses, derived from the code: what its deps must be (issue #13 item 2).

    python tests/dvc_deps.py            # print every stage's exact deps, as dvc.yaml lists them
    python tests/dvc_deps.py STAGE ...  # only these stages
    python tests/dvc_deps.py --write    # rewrite the deps lists in dvc.yaml (nothing else changes)

A stage uses:
- code: stages/<stage>.py and every `cosalign` module it reaches, followed statically through
  `import` statements at any depth (function-level ones too) and through module names written as
  strings (`judges.base.BACKENDS` loads its backends with importlib), plus the `__init__.py` of
  every package on the way;
- resources: the package files a reached module opens (RESOURCES: config templates, benchmark
  specs, card templates);
- data: the path-map entries (cosalign.core.paths) its script names (a folder it reads only some
  files of: those files, MAP_FOLDER_FILES), and every path its params name (a git-tracked file or
  folder, or a pipeline output), including the file-valued defaults of the judge it is configured
  with (or of another stage's judge, JUDGE_SECTION); params are read from params.yaml and every
  profile, so a path any profile uses is a dep. Library functions take their input paths as
  arguments: the library modules that name a path-map entry, and why, are listed in
  LIBRARY_PATH_USES.
A stage's own outputs are not its deps. tests/test_dvc_deps.py compares this with dvc.yaml.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from functools import cache
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
PACKAGE = "cosalign"

# Package files a module opens, by module: a reached module makes them deps. Each entry is a list of
# repo paths or a function of the params (a list of params dicts, one per profile) returning them.
RESOURCES = {
    "cosalign.cosa.config_text": ["src/cosalign/resources/config_templates.yaml"],
    "cosalign.evaluation.benchmarks": lambda params: sorted(
        f"src/cosalign/resources/benchmarks/{name}.yaml"
        for p in params for name in (p.get("evaluate", {}).get("benchmarks") or {})),
    "cosalign.registry.cards": ["src/cosalign/resources/dataset_card.jinja",
                                "src/cosalign/resources/model_card.jinja"],
}
# Params whose value chooses a file from a folder of options: the folder is the dep, so that
# choosing one (or editing one) is tracked even in profiles that leave the param unset.
OPTION_DIRS = {("sft", "accelerate_config"): "configs/accelerate",
               ("dpo", "accelerate_config"): "configs/accelerate"}
# A stage whose judge is another stage's: judge_quality measures prompt_labels.judge.
JUDGE_SECTION = {"judge_quality": "prompt_labels"}
# Path-map folders a script names of which it reads only some files: the files, from the params
# (a list of params dicts, one per profile). judges.quality reads prompts_/triples_<split>.jsonl.
MAP_FOLDER_FILES = {
    "JUDGE_EVAL": lambda params: sorted(
        f"{_paths().JUDGE_EVAL}/{kind}_{split}.jsonl" for kind in ("prompts", "triples")
        for split in {(p.get("judge_quality") or {}).get("split", "eval") for p in params}),
}
# Library modules that name a path-map entry, and why that is not an input they open by themselves.
LIBRARY_PATH_USES = {
    "cosalign.registry.source": "paths.ALL: where a stage's own artifact goes when pulled from the Hub",
    "cosalign.core.workqueue": "WORK_ROOT: checkpoints outside DVC's outputs, not an input",
    "cosalign.data.judging": "labels in errors and validation; the stage passes the files it reads; "
                             "with_fit_data adds JUDGE_TRAIN, the rules judge's own default (judge_inputs)",
    "cosalign.data.prompts": "label in validation errors",
    "cosalign.data.responses": "label in validation errors",
    "cosalign.evaluation.benchmarks": "labels for the prompts frame the caller read",
    "cosalign.judges.rules": "DEFAULT_TRAIN, DEFAULT_JUDGE_TRAIN: judge option defaults, counted as the judge's inputs",
    "cosalign.judges.quality": "EVAL_DIR: the default root; the stage passes paths.JUDGE_EVAL (MAP_FOLDER_FILES)",
    "cosalign.evaluation.evaluate": "the preferences_path default; the stage passes paths.PREFERENCES",
    "cosalign.cli.judge_eval": "the --data default (the CLI, not a stage)",
    "cosalign.cli.eval": "the --prompts default (the CLI, not a stage)",
    "cosalign.core.profiles": "eval_items: the outputs `profile use` retires (the CLI, not a stage)",
    "cosalign.evaluation.readme_results": "the metrics default of its own command (not a stage)",
    "cosalign.cli.publish": "paths.ALL: the artifacts it can publish (the CLI, not a stage)",
    "cosalign.registry.cards": "Artifact: the card's subject (publish, not a stage)",
    "cosalign.registry.publish": "paths.ALL: what publish uploads (the CLI, not a stage)",
    "cosalign.registry.pull": "paths.ALL: where pull puts artifacts (the CLI, not a stage)",
    "cosalign.registry.hub_metadata": "Artifact and repo_id: Hub names for cards (publish, not a stage)",
    "cosalign.cli.validate": "the --taxonomy default (the CLI, not a stage)",
    "cosalign.cosa.taxonomy": "for_command: the --taxonomy default of label and eval (the CLI, not a stage)",
}


# --- code ----------------------------------------------------------------------------------------

def module_file(name: str) -> Path | None:
    """src/cosalign/a/b.py or src/cosalign/a/b/__init__.py for `cosalign.a.b`; None if neither."""
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported_modules(path: Path, name: str | None) -> set[str]:
    """The `cosalign` modules the file at `path` (module `name`, None for a script) imports anywhere
    in its body, or names in a string constant (`"cosalign.judges.rules:RulesJudge"`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = _package_of(name, path).split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)  # kept when a.name is a module
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.partition(":")[0]
            if text.startswith(PACKAGE + ".") and text.replace(".", "").replace("_", "").isalnum():
                found.add(text)
    return {m for m in found if (m == PACKAGE or m.startswith(PACKAGE + ".")) and module_file(m)}


def _with_parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


@cache
def module_closure(script: str) -> frozenset[str]:
    """Every `cosalign` module the script reaches, with the packages on the way."""
    todo = set().union(*map(_with_parents, imported_modules(REPO / script, None)))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        seen.add(name)
        todo |= set().union(set(), *map(_with_parents, imported_modules(module_file(name), name))) - seen
    return frozenset(seen)


def rel(path: Path) -> str:
    return path.resolve().relative_to(REPO).as_posix()


# --- params and data -----------------------------------------------------------------------------

def all_params() -> list[dict]:
    """params.yaml and every profile's complete params (DVC reads params.yaml; a profile becomes it)."""
    out = [yaml.safe_load((REPO / "params.yaml").read_text())]
    try:
        from cosalign.core import profiles  # profiles as overlays of profiles/base.yaml
        out += [profiles.load(n, REPO) for n in profiles.names(REPO)]
    except ImportError:  # complete profiles
        out += [yaml.safe_load(p.read_text()) for p in sorted((REPO / "profiles").glob("*.yaml"))]
    return out


@cache
def tracked() -> frozenset[str]:
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    return frozenset(files) | frozenset(p for f in files for p in _ancestors(f))


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _outputs_of_map() -> set[str]:
    from cosalign.core import paths
    return {v for k, v in vars(paths).items() if k.isupper() and isinstance(v, str)} - {paths.WORK_ROOT}


def repo_path(value) -> str | None:
    """`value` as a path into the repository (a tracked file or folder, or a pipeline output or a
    file under one), else None."""
    if not isinstance(value, str) or not value or "\n" in value:
        return None
    value = value.removeprefix("./").rstrip("/")
    outputs = _outputs_of_map()
    if value in tracked() or value in outputs or any(value.startswith(o + "/") for o in outputs):
        return value
    return None


def _walk_values(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from _walk_values(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk_values(v)
    else:
        yield node


def _judge_sections(node):
    """Every `judge: {name: ...}` mapping inside a params section."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "judge" and isinstance(v, dict) and "name" in v:
                yield v
            else:
                yield from _judge_sections(v)
    elif isinstance(node, list):
        for v in node:
            yield from _judge_sections(v)


def judge_inputs(judge: dict) -> set[str]:
    """Repo files a configured judge reads: its options' values and defaults that are repo paths
    (a list-valued option, like the rules judge's extra_train, counts each of its items)."""
    from cosalign.judges.base import backend_class

    sig = inspect.signature(backend_class(judge["name"]).__init__)
    values = {k: p.default for k, p in sig.parameters.items() if k != "self"}
    values.update({k: v for k, v in judge.items() if k != "name"})
    flat = [x for v in values.values() for x in (v if isinstance(v, (list, tuple)) else [v])]
    return {p for p in map(repo_path, flat) if p}


def param_inputs(stage: str, section: dict, item: dict | None = None) -> set[str]:
    """Paths a stage's params section names (for a foreach stage, only the current item's entry
    among the `models`-style mapping it iterates over)."""
    used = {p for p in map(repo_path, _walk_values(section)) if p}
    if item is not None:
        used = {p for p in map(repo_path, _walk_values({k: v for k, v in section.items() if k != "models"})) if p}
        used |= {p for p in map(repo_path, _walk_values(item)) if p}
    for judge in _judge_sections(section):
        used |= judge_inputs(judge)
    for (name, key), folder in OPTION_DIRS.items():
        if name == stage:
            used.add(folder)
            used = {p for p in used if not p.startswith(folder + "/")}
    return used


def _paths():
    from cosalign.core import paths
    return paths


def script_paths(script: str, params: list[dict] | None = None) -> set[str]:
    """The path-map entries the stage script names (`paths.PROMPTS`, `paths.eval_items(...)`;
    for a folder in MAP_FOLDER_FILES, the files of it the params choose)."""
    paths = _paths()
    tree = ast.parse((REPO / script).read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "paths":
            value = getattr(paths, node.attr)
            if node.attr in MAP_FOLDER_FILES:
                out |= set(MAP_FOLDER_FILES[node.attr](all_params() if params is None else params))
            elif isinstance(value, str):
                out.add(value)
            elif node.attr == "eval_items":
                out.add(paths.eval_items("${key}"))
    return out


# --- stages --------------------------------------------------------------------------------------

def dvc_stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def stage_outputs(stage: dict) -> set[str]:
    body = stage.get("do", stage)
    return {next(iter(e)) if isinstance(e, dict) else e
            for kind in ("outs", "metrics", "plots") for e in body.get(kind, [])}


def script_of(stage: dict) -> str:
    cmd = stage.get("do", stage)["cmd"].split()
    return next(w for w in cmd if w.startswith("stages/") and w.endswith(".py"))


def is_output(path: str, outputs: set[str]) -> bool:
    """`path` is one of the outputs, or a folder holding some of them."""
    return path in outputs or any(o.startswith(path + "/") for o in outputs)


def used_files(name: str, stage: dict, params: list[dict] | None = None) -> dict[str, set[str]]:
    """What the stage uses, by kind: code, resources, data (see the module docstring). For a foreach
    stage, `${item.KEY}` stands for each item's value (data holds the union over the items)."""
    params = all_params() if params is None else params
    script = script_of(stage)
    modules = module_closure(script)
    code = {script} | {rel(module_file(m)) for m in modules}
    resources: set[str] = set()
    for m in modules:
        entry = RESOURCES.get(m, [])
        resources |= set(entry(params) if callable(entry) else entry)
    section = name  # a stage reads the params section named after it (evaluate@MODEL: evaluate)
    data = set(script_paths(script, params))
    for p in params:
        if name in JUDGE_SECTION:
            for judge in _judge_sections(p.get(JUDGE_SECTION[name]) or {}):
                data |= judge_inputs(judge)
        sec = p.get(section) or {}
        if "foreach" in stage:
            for item in (sec.get("models") or {}).values():
                data |= param_inputs(name, sec, item or {})
        else:
            data |= param_inputs(name, sec)
    outputs = stage_outputs(stage)
    data = {d for d in data if not is_output(d, outputs)}
    return {"code": code, "resources": resources, "data": data}


def foreach_item_deps(stage: dict) -> list[str]:
    """A foreach stage's deps written with `${item.KEY}`, which stand for a per-item path."""
    return [d for d in stage.get("do", stage).get("deps", []) if "${item." in d]


def exact_deps(name: str, stage: dict, params: list[dict] | None = None) -> list[str]:
    """The deps dvc.yaml should list for the stage: the script, code, resources, then data.
    A folder replaces its files when the stage uses every tracked file in it."""
    used = used_files(name, stage, params)
    item_deps = foreach_item_deps(stage)
    if item_deps:  # `${item.checkpoint}` lists each item's checkpoint
        params = all_params() if params is None else params
        items = [item or {} for p in params for item in ((p.get(name) or {}).get("models") or {}).values()]
        per_item = {repo_path(item.get(d.split("${item.")[1].rstrip("}"))) for d in item_deps for item in items}
        used["data"] -= per_item
    script = script_of(stage)
    code = collapse(used["code"] - {script})
    return [script] + code + sorted(used["resources"]) + sorted(used["data"]) + item_deps


def collapse(files: set[str]) -> list[str]:
    """Sorted files, a folder standing for its files when every tracked file in it is listed."""
    files = set(files)
    changed = True
    while changed:
        changed = False
        for folder in sorted({f.rpartition("/")[0] for f in files if "/" in f}, key=len, reverse=True):
            inside = {t for t in tracked() if t.startswith(folder + "/") and (REPO / t).is_file()}
            members = {f for f in files if f.startswith(folder + "/")}
            if inside and _covered(inside, members) and members != {folder}:
                files = (files - members) | {folder}
                changed = True
                break
    return sorted(files)


def _covered(inside: set[str], members: set[str]) -> bool:
    return all(f in members or any(f.startswith(m + "/") for m in members) for f in inside)


def write_deps(text: str, deps: dict[str, list[str]]) -> str:
    """dvc.yaml `text` with each named stage's `deps:` list replaced (comments elsewhere kept)."""
    lines = text.splitlines(keepends=True)
    out, stage, i = [], None, 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        if line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":"):
            stage = line.strip()[:-1]
        if line.strip() == "deps:" and stage in deps:
            indent = line[:len(line) - len(line.lstrip())] + "  "
            i += 1
            while i < len(lines) and lines[i].startswith(indent + "- "):
                i += 1
            out += [f"{indent}- {d}\n" for d in deps[stage]]
            continue
        i += 1
    return "".join(out)


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(SRC))
    write = "--write" in argv
    argv = [a for a in argv if a != "--write"]
    stages = dvc_stages()
    names = argv or list(stages)
    unknown = [n for n in names if n not in stages]
    if unknown:
        print(f"error: no stage(s) {unknown} in dvc.yaml (have {list(stages)})", file=sys.stderr)
        return 2
    params = all_params()
    deps = {name: exact_deps(name, stages[name], params) for name in names}
    if write:
        path = REPO / "dvc.yaml"
        path.write_text(write_deps(path.read_text(), deps))
        print(f"dvc.yaml: deps of {len(deps)} stage(s) rewritten")
        return 0
    for name in names:
        print(f"  {name}:\n    deps:")
        for dep in deps[name]:
            print(f"      - {dep}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
