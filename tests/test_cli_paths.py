"""Every command that takes a path reports a missing one as missing (exit 2, the path named),
before it loads a model or reaches the network."""

from __future__ import annotations

import pytest

from cosalign.cli import main


@pytest.mark.parametrize("argv, missing", [
    (["label", "--judge", "rules", "{d}/nope.csv", "{d}/out.csv"], "{d}/nope.csv"),
    (["label", "--judge", "rules", "{d}/in.csv", "{d}/out.csv", "--params", "{d}/p.yaml"], "{d}/p.yaml"),
    (["eval", "--model", "{d}/no-model", "--benchmark", "heldout"], "{d}/no-model"),
    (["eval", "--model", "{d}", "--benchmark", "heldout", "--prompts", "{d}/no.parquet"], "{d}/no.parquet"),
    (["eval", "--model", "{d}", "--benchmark", "cosapien", "--benchmark-path", "{d}/no-bench"], "{d}/no-bench"),
    (["eval", "--model", "{d}", "--benchmark", "heldout", "--fewshot", "{d}/no.jsonl"], "{d}/no.jsonl"),
    (["publish", "--namespace", "me", "--root", "{d}/no-project"], "{d}/no-project"),
    (["pull", "me/cosalign-preferences", "--revision", "v1", "--root", "{d}/no-project"], "{d}/no-project"),
    (["serve", "--model", "{d}/no-model", "--keys", "{d}/keys.yaml"], "{d}/no-model"),
    (["serve", "--model", "{d}", "--keys", "{d}/no-keys.yaml"], "{d}/no-keys.yaml"),
    (["serve", "--model", "{d}", "--keys", "{d}/keys.yaml", "--configs-dir", "{d}/no-reg"], "{d}/no-reg"),
    (["config", "list", "--configs-dir", "{d}/no-reg"], "{d}/no-reg"),
    (["config", "show", "x@1", "--configs-dir", "{d}/no-reg"], "{d}/no-reg"),
    (["config", "approve", "x@1", "--reviewer", "r", "--configs-dir", "{d}/no-reg"], "{d}/no-reg"),
    (["config", "new", "x", "--owner", "o", "--text-file", "{d}/no.txt", "--configs-dir", "{d}"], "{d}/no.txt"),
    (["config", "keys", "list", "--keys", "{d}/no-keys.yaml"], "{d}/no-keys.yaml"),
    (["config", "keys", "revoke", "abcdef0123", "--keys", "{d}/no-keys.yaml"], "{d}/no-keys.yaml"),
])
def test_missing_path_is_reported_as_missing(argv, missing, tmp_path, capsys):
    (tmp_path / "in.csv").write_text("prompt\nhello\n")
    (tmp_path / "keys.yaml").write_text("{}\n")
    d = str(tmp_path)
    rc = main([a.format(d=d) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith(f"error: {missing.format(d=d)}") and ("does not exist" in err or "not found" in err), err


def test_a_hub_id_is_not_taken_for_a_missing_directory(tmp_path, monkeypatch):
    from cosalign.cli.checks import local_but_missing

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert not local_but_missing("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert not local_but_missing("gpt2")
    assert local_but_missing("models/sft")  # models/ is here: a local path, and it is missing
    assert local_but_missing("./sft") and local_but_missing("a/b/c")
