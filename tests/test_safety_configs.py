"""The safety-config registry: lifecycle, hash pinning, validation errors, keys, shipped examples."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from cosalign.serving import lifecycle as sc
from cosalign.cosa import taxonomy
from cosalign.cli import main
from cosalign.core.io import InputError
from cosalign.serving import keys

T0 = "2026-01-01T00:00:00Z"


@pytest.fixture
def reg(tmp_path):
    return tmp_path / "safety_configs"


def _approved(reg, cid="game-studio", allowed=(taxonomy.VIOLENCE,)):
    sc.new_config(reg, cid, owner="studio", allowed=list(allowed))
    sc.review(reg, f"{cid}@1", "safety-lead", "ok", "approve", at=T0)
    return sc.approve(reg, f"{cid}@1", reviewer="safety-lead", at=T0)


def test_lifecycle(reg):
    cfg = sc.new_config(reg, "game-studio", owner="studio", allowed=[taxonomy.VIOLENCE])
    assert (cfg.ref, cfg.status, cfg.state()) == ("game-studio@1", "draft", "draft")
    assert (reg / "game-studio" / "v1.yaml").exists()
    sc.review(reg, "game-studio@1", "safety-lead", "violence for combat scenes only", "changes", at=T0)
    with pytest.raises(InputError, match="owner .* cannot approve"):
        sc.approve(reg, "game-studio@1", reviewer="studio")
    with pytest.raises(InputError, match="no approving review .* since the `changes` verdict"):
        sc.approve(reg, "game-studio@1", reviewer="safety-lead")
    sc.review(reg, "game-studio@1", "safety-lead", "combat only: fine", "approve", at=T0)
    cfg = sc.approve(reg, "game-studio@1", reviewer="safety-lead", at=T0)
    assert cfg.state() == "approved" and cfg.reviewer == "safety-lead"
    assert cfg.approved_hash == cfg.compute_hash() == sc.load(reg, "game-studio@1").content_hash
    assert [r.verdict for r in cfg.reviews] == ["changes", "approve"]
    assert re.fullmatch(r"game-studio@1:[0-9a-f]{12}", cfg.fingerprint())
    with pytest.raises(InputError, match="only a draft"):
        sc.approve(reg, "game-studio@1", reviewer="other")
    # changing an approved config means a new version, copied from the old one
    v2 = sc.new_config(reg, "game-studio", allowed=[taxonomy.VIOLENCE, taxonomy.PRIVACY],
                       from_ref="game-studio@1")
    assert (v2.version, v2.owner, v2.status) == (2, "studio", "draft")
    assert sc.load(reg, "game-studio").version == 2  # no version = latest
    assert v2.compute_hash() != cfg.compute_hash()
    retired = sc.retire(reg, "game-studio@1", at=T0)
    assert retired.state() == "retired" and "retired" in sc.servable(retired)
    with pytest.raises(InputError, match="retired"):
        sc.review(reg, "game-studio@1", "x", "late note")


def test_edit_after_approval_is_detected_and_refused(reg):
    cfg = _approved(reg)
    path = reg / "game-studio" / "v1.yaml"
    original = path.read_text()
    path.write_text(original.replace("- Violence\n", "- Violence\n- Privacy Violations\n"))
    edited = sc.load(reg, "game-studio@1")
    assert edited.allowed_categories == [taxonomy.VIOLENCE, taxonomy.PRIVACY]
    assert edited.status == "approved" and edited.state() == "modified-after-approval"
    assert "modified after approval" in sc.servable(edited)
    with pytest.raises(InputError, match="changed after approval.*--from game-studio@1"):
        sc.approve(reg, "game-studio@1", reviewer="safety-lead")
    assert main(["config", "list", "--configs-dir", str(reg)]) == 1  # list fails as a CI check
    path.write_text(original)  # restoring the approved content restores the approval
    assert sc.servable(sc.load(reg, "game-studio@1")) is None
    assert sc.load(reg, "game-studio@1").fingerprint() == cfg.fingerprint()


def test_record_is_not_content(reg):
    cfg = _approved(reg)
    sc.record_scores(reg, "game-studio@1", "models/dpo", {"cosa_score": 0.25, "valid_rate": 1},
                     benchmark="cosapien", evaluated_at=T0)
    sc.record_scores(reg, "game-studio@1", "models/dpo", {"cosa_score": 0.5}, benchmark="heldout",
                     evaluated_at=T0)
    sc.record_scores(reg, "game-studio@1", "models/sft", {"cosa_score": 0.1}, benchmark="heldout",
                     evaluated_at=T0)
    got = sc.load(reg, "game-studio@1")
    assert got.scores["models/dpo"].metrics == {"cosa_score": 0.5}  # latest per model
    assert got.scores["models/dpo"].benchmark == "heldout"
    assert set(got.scores) == {"models/dpo", "models/sft"}
    assert got.state() == "approved" and got.fingerprint() == cfg.fingerprint()
    with pytest.raises(ValueError, match="versioned"):
        sc.record_scores(reg, "game-studio", "m", {}, benchmark="b")


def test_hash_covers_content_only_and_is_canonical(reg):
    a = sc.SafetyConfig(id="a", version=1, kind="categorical", owner="x",
                        allowed_categories=[taxonomy.PRIVACY, taxonomy.FINANCIAL])
    b = sc.SafetyConfig(id="a", version=1, kind="categorical", owner="someone else", status="draft",
                        allowed_categories=[taxonomy.FINANCIAL, taxonomy.PRIVACY])
    assert a.allowed_categories == [taxonomy.FINANCIAL, taxonomy.PRIVACY]
    assert a.compute_hash() == b.compute_hash()
    c = b.model_copy(update={"template": "heldout-02"})
    assert c.compute_hash() != a.compute_hash()  # the phrasing is content: it changes the prompt


def _write(reg, data, cid="x", version=1):
    path = reg / cid / f"v{version}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


BASE = {"id": "x", "version": 1, "kind": "categorical", "owner": "o", "allowed_categories": []}


@pytest.mark.parametrize("change, field, message", [
    ({"allowed_categories": ["Violense"]}, "allowed_categories", "unknown risk category 'Violense'"),
    ({"allowed_categories": [taxonomy.OTHER]}, "allowed_categories", "can never be allowed"),
    ({"allowed_categories": "Violence"}, "allowed_categories", "valid list"),
    ({"allowed_categories": None, "text": "hi"}, "allowed_categories", "needs allowed_categories"),
    ({"kind": "freeform", "allowed_categories": None}, "text", "non-empty text"),
    ({"version": 0}, "version", "greater than or equal to 1"),
    ({"status": "live"}, "status", "draft"),
    ({"status": "approved"}, "approved_hash", "needs reviewer and approved_hash"),
    ({"alowed_categories": []}, "alowed_categories", "Extra inputs"),
    ({"id": "X"}, "id", "pattern"),
])
def test_validation_errors_name_file_and_field(reg, change, field, message):
    path = _write(reg, {**BASE, **change})
    with pytest.raises(InputError, match=re.escape(message)) as err:
        sc.load_file(path)
    assert err.value.field == field and err.value.path == str(path)


def test_file_name_must_match_id_and_version(reg):
    with pytest.raises(InputError) as err:
        sc.load_file(_write(reg, BASE, cid="y"))
    assert err.value.field == "id"
    with pytest.raises(InputError) as err:
        sc.load_file(_write(reg, BASE, version=2))
    assert err.value.field == "version"


def test_new_refuses_bad_categories(reg):
    with pytest.raises(InputError, match="never be allowed"):
        sc.new_config(reg, "x", owner="o", allowed=[taxonomy.OTHER])
    with pytest.raises(InputError, match="unknown risk category"):
        sc.new_config(reg, "x", owner="o", allowed=["Violent Stuff"])
    with pytest.raises(InputError, match="unknown template"):
        sc.new_config(reg, "x", owner="o", allowed=[], template="no-such-template")
    assert not reg.exists() or not list(reg.rglob("*.yaml"))  # nothing half-written


def test_system_prompt_renders_the_allowed_list(reg):
    games = sc.system_prompt(_approved(reg))
    kids = sc.system_prompt(_approved(reg, "kids", allowed=()))
    assert taxonomy.VIOLENCE in games and taxonomy.BY_NAME[taxonomy.VIOLENCE].description in games
    assert taxonomy.VIOLENCE not in kids and "None" in kids
    free = sc.new_config(reg, "film", owner="o", text="Depict crime on screen; no real recipes.")
    assert sc.system_prompt(free) == "Depict crime on screen; no real recipes."


def test_keys_store_only_hashes(reg, tmp_path):
    cfg = _approved(reg)
    sc.new_config(reg, "draft-one", owner="o", allowed=[])
    keys_file = tmp_path / "keys.yaml"
    key = keys.add_key(keys_file, "game-studio@v1", configs_dir=reg)
    text = keys_file.read_text()
    assert key not in text and keys.hash_key(key) in text
    assert keys.load_keys(keys_file) == {keys.hash_key(key): f"game-studio@1:{cfg.compute_hash()}"}
    assert keys_file.stat().st_mode & 0o077 == 0  # not readable by others
    with pytest.raises(InputError, match="draft, not approved"):
        keys.add_key(keys_file, "draft-one@1", configs_dir=reg)
    with pytest.raises(ValueError, match="one version"):
        keys.add_key(keys_file, "game-studio", configs_dir=reg)
    v2 = keys.Binding("game-studio@2", "ab" * 32)
    assert keys.rebind_keys(keys_file, "game-studio@1", v2) == 1
    assert keys.revoke_key(keys_file, keys.hash_key(key)[:10]) == str(v2)
    assert keys.load_keys(keys_file) == {}
    keys_file.write_text(f"keys:\n  {key}: game-studio@1\n")  # someone pasted a plaintext key
    with pytest.raises(InputError, match="never in plain text"):
        keys.load_keys(keys_file)


def test_cli_round_trip(reg, tmp_path, capsys):
    d = ["--configs-dir", str(reg)]
    assert main(["config", "new", "game-studio", "--owner", "studio", "--allow", taxonomy.VIOLENCE, *d]) == 0
    assert main(["config", "new", "film", "--owner", "studio", "--text", "  No real recipes.\n", *d]) == 0
    assert main(["config", "review", "game-studio@1", "--reviewer", "lead", "--note", "ok",
                 "--verdict", "approve", *d]) == 0
    assert main(["config", "approve", "game-studio@1", "--reviewer", "studio", *d]) == 2  # self-approval
    assert main(["config", "approve", "game-studio@1", "--reviewer", "lead", *d]) == 0
    assert main(["config", "new", "bad", "--owner", "o", "--allow", taxonomy.OTHER, *d]) == 2
    capsys.readouterr()
    assert main(["config", "list", *d]) == 0
    out = capsys.readouterr().out
    assert re.search(r"game-studio@1\s+categorical\s+approved", out)
    assert re.search(r"film@1\s+freeform\s+draft", out)
    assert sc.load(reg, "film@1").text == "No real recipes."
    assert main(["config", "show", "game-studio", *d]) == 0
    out = capsys.readouterr().out
    assert "approved hash:" in out and "matches" in out and taxonomy.VIOLENCE in out
    keys_file = tmp_path / "keys.yaml"
    assert main(["config", "keys", "add", "--keys", str(keys_file), "--config", "game-studio@1", *d]) == 0
    cap = capsys.readouterr()
    key = cap.out.strip()
    assert key.startswith("csk-") and key not in cap.err and key not in keys_file.read_text()
    digest = sc.load(reg, "game-studio@1").compute_hash()
    assert keys.load_keys(keys_file)[keys.hash_key(key)] == f"game-studio@1:{digest}"


def test_shipped_examples_are_valid_and_pinned(repo_root, tmp_path):
    configs, errors = sc.list_configs(repo_root / "safety_configs")
    assert not errors
    by_ref = {c.ref: c for c in configs}
    assert by_ref["game-studio@1"].allowed_categories == [taxonomy.VIOLENCE]
    assert by_ref["childrens-publisher@1"].allowed_categories == []
    assert by_ref["film-production@1"].kind == "freeform"
    for ref in ("game-studio@1", "childrens-publisher@1"):
        assert by_ref[ref].state() == "approved"
    assert by_ref["film-production@1"].state() == "draft"
    for c in configs:
        assert c.content_hash == c.compute_hash(), c.ref
        assert c.eval_prompts and sc.system_prompt(c)
    copy = tmp_path / "copy"
    shutil.copytree(repo_root / "safety_configs", copy)
    assert main(["config", "list", "--configs-dir", str(copy)]) == 0


# -- issue 16: approvals that an edited file cannot silently widen ------------------------------

@pytest.mark.parametrize("owner_alias", ["Studio", "STUDIO ", "stu\u200bdio", "\uff53\uff54\uff55\uff44\uff49\uff4f"])
def test_owner_cannot_approve_under_another_spelling(reg, owner_alias):
    sc.new_config(reg, "game-studio", owner="studio", allowed=[taxonomy.VIOLENCE])
    with pytest.raises(InputError, match="owner .* cannot give their own config an approving review"):
        sc.review(reg, "game-studio@1", owner_alias, "looks fine to me", "approve")
    sc.review(reg, "game-studio@1", "lead", "ok", "approve")
    with pytest.raises(InputError, match="owner .* cannot approve"):
        sc.approve(reg, "game-studio@1", reviewer=owner_alias)
    assert sc.same_person("Al\u200dice", "ALICE") and not sc.same_person("alice", "alicia")


def test_approve_needs_an_approving_review_of_the_current_content(reg):
    sc.new_config(reg, "game-studio", owner="studio", allowed=[])
    path = reg / "game-studio" / "v1.yaml"
    with pytest.raises(InputError, match="no approving review") as err:
        sc.approve(reg, "game-studio@1", reviewer="lead")  # no review at all
    assert err.value.field == "reviews"
    sc.review(reg, "game-studio@1", "lead", "nothing allowed: fine", "approve")
    # the draft is then widened by hand: the approving review looked at other content
    path.write_text(path.read_text().replace("allowed_categories: []",
                                             f"allowed_categories:\n- {taxonomy.VIOLENCE}"))
    with pytest.raises(InputError, match="no approving review of the current content"):
        sc.approve(reg, "game-studio@1", reviewer="lead")
    sc.review(reg, "game-studio@1", "lead", "violence too: fine", "approve")
    sc.review(reg, "game-studio@1", "legal", "not without the legal note", "changes")
    with pytest.raises(InputError, match="since the `changes` verdict by legal"):
        sc.approve(reg, "game-studio@1", reviewer="lead")
    sc.review(reg, "game-studio@1", "legal", "note added elsewhere", "comment")
    with pytest.raises(InputError, match="since the `changes` verdict"):  # a comment is no approval
        sc.approve(reg, "game-studio@1", reviewer="lead")
    sc.review(reg, "game-studio@1", "legal", "fine now", "approve")
    cfg = sc.approve(reg, "game-studio@1", reviewer="lead")
    assert cfg.state() == "approved" and cfg.allowed_categories == [taxonomy.VIOLENCE]


def _write_taxonomy(root, **descriptions):
    tax = taxonomy.build(descriptions=descriptions)
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "taxonomy.json").write_text(json.dumps({"categories": tax.as_dicts()}))
    return tax


def test_hash_covers_the_rendered_prompt_and_the_taxonomy_it_renders_with(reg, tmp_path, monkeypatch):
    cfg = _approved(reg)
    before = cfg.compute_hash()
    # same categories, same template id, another description for Violence (issue 13's params)
    new_tax = _write_taxonomy(tmp_path, **{taxonomy.VIOLENCE: "Anything at all, including weapons."})
    edited = sc.load(reg, "game-studio@1")
    assert "Anything at all, including weapons." in sc.system_prompt(edited)
    assert edited.compute_hash() != before and edited.state() == "modified-after-approval"
    assert sc.registry_taxonomy(reg).fingerprint() == new_tax.fingerprint()
    assert cfg.taxonomy_fingerprint == taxonomy.PAPER.fingerprint()
    assert "the taxonomy changed since the file was written" in sc.servable(edited)
    # a description of a category the config does not allow does not change what it says
    _write_taxonomy(tmp_path, **{taxonomy.PRIVACY: "Other words."})
    assert sc.load(reg, "game-studio@1").compute_hash() == before
    (tmp_path / "data" / "taxonomy.json").unlink()
    assert sc.registry_taxonomy(reg) is taxonomy.PAPER  # no data/taxonomy.json beside the registry
    # the template's wording is content too, not only its id
    assert sc.load(reg, "game-studio@1").compute_hash() == before
    reworded = {tid: dict(t, text=t["text"] + "\nBe brief.") for tid, t in sc._templates().items()}
    monkeypatch.setattr(sc, "_templates", lambda: reworded)
    assert sc.load(reg, "game-studio@1").compute_hash() != before


def test_taxonomy_extras_are_categories_a_config_may_allow(reg, tmp_path):
    tax = taxonomy.build([{"name": "Gambling", "description": "Betting and casinos.", "seen": False}])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "taxonomy.json").write_text(json.dumps({"categories": tax.as_dicts()}))
    cfg = sc.new_config(reg, "casino", owner="o", allowed=["Gambling", taxonomy.VIOLENCE])
    assert cfg.allowed_categories == [taxonomy.VIOLENCE, "Gambling"]
    assert "Betting and casinos." in sc.system_prompt(sc.load(reg, "casino@1"))


def test_duplicate_yaml_keys_are_refused(reg, tmp_path):
    _approved(reg, allowed=())
    path = reg / "game-studio" / "v1.yaml"
    text = path.read_text()
    # a second allowed_categories further down would silently win over the reviewed one
    path.write_text(text + f"allowed_categories:\n- {taxonomy.VIOLENCE}\n")
    with pytest.raises(InputError, match=r"line \d+: duplicate key 'allowed_categories' \(first at line \d+\)") as err:
        sc.load_file(path)
    assert err.value.path == str(path) and err.value.field == "allowed_categories"
    path.write_text(text)
    keys_file = tmp_path / "keys.yaml"
    keys.add_key(keys_file, "game-studio@1", configs_dir=reg)
    (digest, binding), = keys.load_keys(keys_file).items()
    keys_file.write_text(f"keys:\n  {digest}: {binding}\n  {digest}: passthrough\n")
    with pytest.raises(InputError, match=f"duplicate key '{digest}'") as err:
        keys.load_keys(keys_file)
    assert err.value.path == str(keys_file)


def _widen_by_hand(path, category):
    """What the issue measured: add a category, then paste the new hash everywhere it appears."""
    old = yaml.safe_load(path.read_text())["approved_hash"]
    text = path.read_text().replace("allowed_categories: []", f"allowed_categories:\n- {category}")
    path.write_text(text)
    new = sc.load_file(path).compute_hash()
    path.write_text(text.replace(old, new))
    return new


def test_keys_pin_the_content_they_were_issued_for(reg, tmp_path, capsys):
    cfg = _approved(reg, allowed=())
    keys_file = tmp_path / "keys.yaml"
    key = keys.add_key(keys_file, "game-studio@1", configs_dir=reg)
    assert keys.load_keys(keys_file)[keys.hash_key(key)] == f"game-studio@1:{cfg.compute_hash()}"
    pinned = keys.load_bindings(keys_file)[keys.hash_key(key)]
    new = _widen_by_hand(reg / "game-studio" / "v1.yaml", taxonomy.WEAPONS)
    widened = sc.load(reg, "game-studio@1")
    # the file alone now looks approved ...
    assert widened.allowed_categories == [taxonomy.WEAPONS] and widened.state() == "approved"
    assert widened.approved_hash == widened.content_hash == new
    assert sc.servable(widened) is None
    # ... but not for the key issued for the reviewed content
    assert "not the content this key was issued for" in sc.servable(widened, pinned.content_hash)
    d = ["--configs-dir", str(reg)]
    capsys.readouterr()
    assert main(["config", "list", *d, "--keys", str(keys_file)]) == 1
    assert "KEYS ISSUED FOR OTHER CONTENT" in capsys.readouterr().out


def test_list_flags_an_approval_without_a_review(reg, capsys):
    sc.new_config(reg, "kids", owner="o", allowed=[])
    path = reg / "kids" / "v1.yaml"
    digest = sc.load(reg, "kids@1").compute_hash()
    path.write_text(path.read_text().replace("status: draft", f"status: approved\nreviewer: o2\n"
                                             f"approved_hash: {digest}"))
    assert sc.load(reg, "kids@1").state() == "approved"
    assert main(["config", "list", "--configs-dir", str(reg)]) == 1
    assert "APPROVAL NOT BACKED BY A REVIEW" in capsys.readouterr().out


def test_old_unpinned_bindings_are_listed_and_repinned_by_rebind(reg, tmp_path, capsys):
    cfg = _approved(reg)
    keys_file = tmp_path / "keys.yaml"
    digest = "a" * 64
    keys_file.write_text(f"version: 1\nkeys:\n  {digest}: game-studio@1\n")  # written by old cosalign
    d = ["--configs-dir", str(reg), "--keys", str(keys_file)]
    assert main(["config", "keys", "list", *d]) == 0
    assert "NOT PINNED" in capsys.readouterr().out
    assert main(["config", "keys", "rebind", "--from", "game-studio@1", "--to", "game-studio@1", *d]) == 0
    assert keys.load_keys(keys_file)[digest] == f"game-studio@1:{cfg.compute_hash()}"


def _add_key_in_a_process(keys_file, reg, start, out):
    import contextlib
    import io

    start.wait()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        rc = main(["config", "keys", "add", "--keys", str(keys_file), "--config", "game-studio@1",
                   "--configs-dir", str(reg)])
    out.put((rc, buf.getvalue().strip()))


def test_six_parallel_key_adds_all_survive(reg, tmp_path):
    import multiprocessing

    _approved(reg)
    keys_file = tmp_path / "keys.yaml"
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_add_key_in_a_process, args=(keys_file, reg, start, out)) for _ in range(6)]
    for p in procs:
        p.start()
    start.set()  # all six read-modify-write the file at once
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    printed = [key for rc, key in results if rc == 0 and key.startswith("csk-")]
    assert len(printed) == 6, results
    stored = keys.load_keys(keys_file)
    assert {keys.hash_key(k) for k in printed} == set(stored)
