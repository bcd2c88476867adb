"""Stage params in one style (issue #13 item 5): every stage script reads its section into a
fail-fast dataclass through `run_stage`/`stage_params`, and every profile's sections build."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from cosalign.core.io import InputError
from cosalign.core.params import from_section
from cosalign.core.stage import stage_params
from cosalign.data.configs import ConfigsParams
from cosalign.data.judging import JudgmentsParams, PromptLabelsParams
from cosalign.data.preferences import PreferencesParams
from cosalign.data.prompts import PromptsParams
from cosalign.data.responses import ResponsesParams
from cosalign.data.taxonomy import TaxonomyParams
from cosalign.evaluation.evaluate import EvaluateParams
from cosalign.evaluation.report import ReportParams
from cosalign.judges.quality import JudgeQualityParams
from cosalign.models.base_model import BaseModelParams
from cosalign.training import TrainingParams

REPO = Path(__file__).resolve().parent.parent
CLASSES = {"base_model": BaseModelParams, "prompts": PromptsParams, "taxonomy": TaxonomyParams,
           "prompt_labels": PromptLabelsParams, "configs": ConfigsParams, "responses": ResponsesParams,
           "judgments": JudgmentsParams, "preferences": PreferencesParams, "sft": TrainingParams,
           "dpo": TrainingParams, "evaluate": EvaluateParams, "report": ReportParams,
           "judge_quality": JudgeQualityParams}
PROFILES = sorted(p.stem for p in (REPO / "profiles").glob("*.yaml") if p.stem != "base")


def test_every_stage_has_a_params_class():
    assert set(CLASSES) == set(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_section_builds(name, tmp_path, monkeypatch):
    try:
        from cosalign.core import profiles  # overlays of profiles/base.yaml
        text = profiles.render(name, REPO)
    except ImportError:  # complete profiles, before the overlays
        text = (REPO / "profiles" / f"{name}.yaml").read_text()
    (tmp_path / "params.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    for stage, cls in CLASSES.items():
        assert isinstance(stage_params(stage, cls), cls), stage


def test_every_stage_script_goes_through_the_runner():
    for script in sorted((REPO / "stages").glob("*.py")):
        tree = ast.parse(script.read_text())
        main_guard = [n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)]
        assert main_guard and ast.unparse(main_guard[0].body[0]) == "run_stage(main)", script.name
        assert "stage_params(" in script.read_text(), script.name


@pytest.mark.parametrize("cls, section, key, message", [
    (ConfigsParams, {"seed": 0, "modes": [], "configs_per_mode": 0}, "configs.configs_per_mode", "at least 1"),
    (ConfigsParams, {"seed": 0, "modes": [], "configs_per_mode": 1, "colour": 1}, "configs.colour", "unknown key"),
    (TaxonomyParams, {"seed": 0, "embedder": {"name": "minilm"}, "method": "dbscan", "n_clusters": 2,
                      "min_cluster_size": 2, "match_threshold": 0.3}, "taxonomy.method", "kmeans or hdbscan"),
    (BaseModelParams, {"source": "tiny", "seed_file": "x"}, "base_model.tiny", "missing value"),
    (BaseModelParams, {"source": "gguf"}, "base_model.source", "smollm2_wheel, tiny or hub"),
    (EvaluateParams, {"seed": 0, "prompts": "p", "prompts_per_config": 1, "models": {}, "benchmarks": {},
                      "judge": {"name": "rules"}, "generation": {"max_new_tokens": 1, "temperature": 0,
                                                                "batch_size": 1}},
     "evaluate.benchmarks", "no benchmarks"),
    (EvaluateParams, {"seed": 0, "prompts": "p", "prompts_per_config": 1, "models": {"m": {}},
                      "benchmarks": {"heldout": {}}, "judge": {"name": "rules"},
                      "generation": {"max_new_tokens": 1, "temperature": 0, "batch_size": 1}},
     "evaluate.models.m.checkpoint", "missing value"),
    (ReportParams, {"baseline": None, "png": "yes"}, "report.png", "expected bool"),
    (ReportParams, {"png": True}, "report.baseline", "missing value"),
    (JudgeQualityParams, {"split": "test"}, "judge_quality.split", "must be one of"),
    (PreferencesParams, {"seed": 0, "cosalign_train": {"on_mismatch": "ignore"}},
     "preferences.cosalign_train.on_mismatch", "'raise' or 'recompute'"),
    (PreferencesParams, {"seed": 0, "cosalign_train": {"path": "x.parquet"}},
     "preferences.cosalign_train.path", "unknown key"),
])
def test_bad_values_fail_naming_the_key(cls, section, key, message):
    name = key.split(".")[0]
    with pytest.raises(InputError) as err:
        from_section(cls, section, name)
    assert f"field '{key}'" in str(err.value) and message in str(err.value)


@pytest.mark.parametrize("system, key, message", [
    ({"padding_free": "yes"}, "sft.system.padding_free", "expected bool"),
    ({"save_steps": -1}, "sft.system.save_steps", ">= 0"),
    ({"report_to": 3}, "sft.system.report_to", "expected str or list"),
])
def test_training_system_keys_fail_naming_the_key(system, key, message):
    with pytest.raises(InputError) as err:
        TrainingParams.from_dict({"optim": {"learning_rate": 1.0e-5}, "system": system}, "sft")
    assert f"field '{key}'" in str(err.value) and message in str(err.value)


def test_top_level_protocol_and_precision_fail_naming_their_key(tmp_path, monkeypatch):
    from cosalign.core import precision
    from cosalign.core.params import protocol

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("protocol: papers\nprecision: fp16\n")
    with pytest.raises(InputError, match="field 'protocol'.*'papers'"):
        protocol()
    with pytest.raises(InputError, match="field 'precision'.*'fp16'"):
        precision.top_level()
    with pytest.raises(InputError, match="field 'precision'"):  # what the training stages pass on
        TrainingParams.from_dict({"optim": {"learning_rate": 1.0e-5}}, "sft", compute="fp16")
    (tmp_path / "params.yaml").write_text("protocol: paper\nprecision: bf16\n")
    assert protocol() == "paper" and precision.top_level()["setting"] == "bf16"
