"""Issue 16: the schemas are complete contracts, and `cosalign validate` says what broke in one
line per failing row and check: `PATH: row N: CHECK [COLUMNS]: VALUE` (N 1-based, VALUE at most
80 characters), at most 20 such lines, `CHECK: K more rows` per check, then
`PATH: F failing rows (schema S)`; exit 2, nothing on stdout."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from hubserver.project import datasets

from cosalign.cli import main as cli_main
from cosalign.core.io import write_json, write_parquet
from cosalign.cosa import schemas, taxonomy

V, W, O = taxonomy.VIOLENCE, taxonomy.WEAPONS, taxonomy.OTHER


def validate_cli(path, capsys, *args) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = cli_main(["validate", str(path), *args])
    out = capsys.readouterr()
    assert code == 0 or out.out == ""
    return code, out.err.splitlines()


def refused(frame: pd.DataFrame, name: str, tmp_path, capsys, *args) -> tuple[str, list[str]]:
    path = tmp_path / f"{name}.parquet"
    write_parquet(frame, path)
    code, lines = validate_cli(path, capsys, *args)
    assert code == 2, lines
    assert lines[-1].startswith(f"{path}: ") and lines[-1].endswith(f" failing rows (schema {name})"), lines
    return str(path), lines


def good(name: str) -> pd.DataFrame:
    return datasets()[name].copy()


def set_cell(df: pd.DataFrame, row: int, column: str, value) -> None:
    """Put `value` (a list of messages, say) in one cell without pandas spreading it."""
    df[column] = [value if i == row else v for i, v in enumerate(df[column].tolist())]


def answer(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def with_prompt(df: pd.DataFrame, row: int, *, system=None, user=None) -> None:
    msgs = [dict(m) for m in df.at[row, "prompt"]]
    if system is not None:
        msgs[0]["content"] = system
    if user is not None:
        msgs[1]["content"] = user
    set_cell(df, row, "prompt", msgs)


def test_the_fixture_datasets_pass(tmp_path, capsys):
    for name, df in datasets().items():
        write_parquet(df, tmp_path / f"{name}.parquet")
        assert validate_cli(tmp_path / f"{name}.parquet", capsys)[0] == 0, name


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_blank_prompt_id_is_refused(blank, tmp_path, capsys):
    df = good("prompts")
    df.loc[2, "prompt_id"] = blank
    path, lines = refused(df, "prompts", tmp_path, capsys)
    assert lines == [f"{path}: row 3: must be a non-empty string [prompt_id]: {blank!r}",
                     f"{path}: 1 failing rows (schema prompts)"]


@pytest.mark.parametrize("where", ["chosen", "user", "system"])
def test_preferences_with_an_empty_text_are_refused(where, tmp_path, capsys):
    df = good("preferences")
    if where == "chosen":
        set_cell(df, 0, "chosen", answer(" "))
    else:
        with_prompt(df, 0, **{where: " "})
    column, check = ("chosen", schemas.ANSWER_MESSAGE) if where == "chosen" else ("prompt", schemas.PROMPT_MESSAGES)
    path, lines = refused(df, "preferences", tmp_path, capsys)
    assert lines[0].startswith(f"{path}: row 1: {check} [{column}]: ")


def test_preferences_whose_chosen_equals_rejected_are_refused(tmp_path, capsys):
    df = good("preferences")
    set_cell(df, 0, "rejected", df.at[0, "chosen"])
    path, lines = refused(df, "preferences", tmp_path, capsys)
    assert lines[0].startswith(f"{path}: row 1: chosen must differ from rejected [chosen, rejected]: ")
    assert lines[1:] == [f"{path}: 1 failing rows (schema preferences)"]


def test_preferences_that_allow_other_harms_are_refused(tmp_path, capsys):
    from cosalign.cosa.error_score import error_score

    df = good("preferences")
    df.at[0, "allowed_categories"] = [V, O]  # errors recomputed: only the Other Harms rule breaks
    df.loc[0, "chosen_error"] = error_score(df.at[0, "chosen_categories"], True, [V, O])
    df.loc[0, "rejected_error"] = error_score(df.at[0, "rejected_categories"], True, [V, O])
    path, lines = refused(df, "preferences", tmp_path, capsys)
    assert lines[0] == (f"{path}: row 1: {schemas.ALLOWABLE} [allowed_categories]: "
                        "['Violence', 'Other Harms']")
    assert len(lines) == 2


@pytest.mark.parametrize("allowed", [["Violence; Weapons"], "Violence", ["Not A Category"]])
def test_unknown_or_joined_allowed_categories_name_the_column(allowed, tmp_path, capsys):
    df = good("preferences")
    df["allowed_categories"] = [allowed]
    path, lines = refused(df, "preferences", tmp_path, capsys)
    assert any(line.startswith(f"{path}: row 1: {schemas.ALLOWABLE} [allowed_categories]: ")
               for line in lines), lines
    if isinstance(allowed, str):  # a joined string makes the whole column a string column
        assert f"{path}: must have dtype object [allowed_categories]: 'str'" in lines
    assert not any("[system_prompt" in line for line in lines)


def test_config_with_a_whitespace_system_prompt_is_refused(tmp_path, capsys):
    df = good("configs")
    df.loc[1, "system_prompt"] = "  \n "
    path, lines = refused(df, "configs", tmp_path, capsys)
    assert lines[0] == f"{path}: row 2: must be a non-empty string [system_prompt]: '  \\n '"


def test_invalid_judgment_with_a_rating_is_refused(tmp_path, capsys):
    df = good("judgments")
    df.loc[2, "helpfulness"] = 5  # row 3 is invalid: the judge gave no rating
    path, lines = refused(df, "judgments", tmp_path, capsys)
    assert lines == [f"{path}: row 3: an invalid verdict has helpfulness 0, addressed false and no "
                     "categories [valid, helpfulness, addressed, risk_categories]: False | 5 | False | []",
                     f"{path}: 1 failing rows (schema judgments)"]


def test_valid_eval_item_without_helpfulness_is_refused(tmp_path, capsys):
    df = good("eval_items")
    df["helpfulness"] = pd.array([4, None], dtype="Int64")
    path, lines = refused(df, "eval_items", tmp_path, capsys)
    assert lines[0] == (f"{path}: row 2: helpfulness must be present exactly when valid "
                        "[valid, helpfulness]: True | <NA>")


def test_zero_row_parquet_is_refused(tmp_path, capsys):
    path = tmp_path / "prompts.parquet"
    write_parquet(good("prompts").iloc[:0], path)
    code, lines = validate_cli(path, capsys)
    assert code == 2 and lines == [f"error: {path}: has no rows (schema prompts needs at least one)"]


def test_streamed_stage_output_with_no_rows_is_not_written(tmp_path):
    from cosalign.core.io import InputError

    with pytest.raises(InputError, match="has no rows"):
        schemas.write_dataset([good("configs").iloc[:0]], "configs", tmp_path / "configs.parquet")
    assert not (tmp_path / "configs.parquet").exists()


def test_missing_file_is_reported_as_missing(tmp_path, capsys):
    for name in ("prompts.parquet", "mine.parquet", "taxonomy.json"):
        code, lines = validate_cli(tmp_path / name, capsys)
        assert code == 2 and lines == [f"error: {tmp_path / name}: file does not exist"]


# --- messages ----------------------------------------------------------------------------------

def test_a_dataframe_check_names_its_own_columns_once(tmp_path, capsys):
    df = good("preferences")
    with_prompt(df, 0, system="x" * 5000)
    df.loc[0, "chosen_error"], df.loc[0, "rejected_error"] = 2.5, 1.0  # the formula, chosen < rejected
    path, lines = refused(df, "preferences", tmp_path, capsys)
    assert lines[0].startswith(f"{path}: row 1: chosen_error must be lower than rejected_error "
                               "[chosen_error, rejected_error]: 2.5 | 1.0")
    assert lines[1].startswith(f"{path}: row 1: chosen_error/rejected_error must equal the error "
                               "formula [allowed_categories, chosen_categories, chosen_addressed, ")
    assert len(lines) == 3 and "xxxx" not in "".join(lines)


def test_values_are_cut_to_80_characters(tmp_path, capsys):
    df = good("prompts")
    df.loc[0, "split"] = "s" * 5000
    path, lines = refused(df, "prompts", tmp_path, capsys)
    value = lines[0].split("[split]: ", 1)[1]
    assert len(value) == schemas.MAX_VALUE and value.endswith("...")


def test_two_columns_failing_one_check_in_one_row_give_two_lines(tmp_path, capsys):
    df = good("preferences")
    set_cell(df, 0, "chosen", answer(""))
    with_prompt(df, 0, user=" ")
    path, lines = refused(df, "preferences", tmp_path, capsys)
    assert [l.split(": [")[0] for l in lines[:2]] == [  # schema order
        f"{path}: row 1: {schemas.PROMPT_MESSAGES} [prompt]", f"{path}: row 1: {schemas.ANSWER_MESSAGE} [chosen]"]
    assert lines[2:] == [f"{path}: 1 failing rows (schema preferences)"]


def test_a_missing_column_fails_every_row(tmp_path, capsys):
    df = pd.concat([good("judgments"), good("judgments").assign(response_id=lambda d: d.response_id + "b")])
    path, lines = refused(df.drop(columns="valid"), "judgments", tmp_path, capsys)
    assert lines == [f"{path}: column_in_dataframe [valid]: 'missing column'",
                     f"{path}: 6 failing rows (schema judgments)"]


def test_one_bad_row_gives_one_line_per_check(tmp_path, capsys):
    df = good("preferences")
    set_cell(df, 0, "chosen", answer(""))
    df.loc[0, "mode"] = "sometimes"
    path, lines = refused(df, "preferences", tmp_path, capsys)
    assert len(lines) == 3 and {l.split(" [")[0] for l in lines[:2]} == {
        f"{path}: row 1: isin(['exact_match', 'superset', 'safe', 'not_superset'])",
        f"{path}: row 1: must be one message"}


def test_every_row_bad_gives_20_lines_then_counts(tmp_path, capsys):
    df = pd.concat([good("preferences")] * 500, ignore_index=True)
    df["chosen"] = [answer("x" * 5000) for _ in range(len(df))]
    df["rejected"] = [answer("x" * 5000) for _ in range(len(df))]
    df["mode"] = "sometimes"
    path, lines = refused(df, "preferences", tmp_path, capsys)
    assert [l.split(": ")[1] for l in lines[:20]] == [f"row {n}" for n in range(1, 11) for _ in (0, 1)]
    assert sorted(lines[20:-1]) == ["chosen must differ from rejected: 490 more rows",
                                    "isin(['exact_match', 'superset', 'safe', 'not_superset']): 490 more rows"]
    assert lines[-1] == f"{path}: 500 failing rows (schema preferences)"
    assert sum(len(l) for l in lines) < 5000


def test_row_numbers_are_one_based_in_a_jsonl_file(tmp_path, capsys):
    path = tmp_path / "labels.jsonl"
    rows = [{"prompt": "hi", "risk_categories": [V], "valid": True, "judge": "rules"},
            {"prompt": "there", "risk_categories": ["Hate"], "valid": True, "judge": "rules"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, lines = validate_cli(path, capsys)
    assert code == 2 and lines[0] == f"{path}: row 2: {schemas.CATEGORIES} [risk_categories]: ['Hate']"


# --- the category vocabulary comes from the taxonomy ---------------------------------------------

EXTRA = {"name": "Election Misinformation", "description": "Lies about voting.", "seen": True}


def test_schemas_take_the_vocabulary_from_the_taxonomy():
    tax = taxonomy.build([EXTRA])
    df = good("configs")
    df.at[0, "allowed_categories"] = [V, EXTRA["name"]]
    with pytest.raises(schemas.ValidationError, match=r"row 1: must be a list of distinct seen"):
        schemas.validate(df, "configs")  # the paper's taxonomy has no such category
    assert schemas.validate(df, "configs", taxonomy=tax) is df


def test_validate_reads_data_taxonomy_json_or_the_one_given(tmp_path, capsys, monkeypatch):
    tax = taxonomy.build([EXTRA])
    df = good("judgments")
    df.at[0, "risk_categories"] = [EXTRA["name"]]
    path = tmp_path / "judgments.parquet"
    write_parquet(df, path)
    monkeypatch.chdir(tmp_path)
    assert validate_cli(path, capsys)[0] == 2  # no data/taxonomy.json: the paper's names
    write_json({"categories": tax.as_dicts()}, tmp_path / "elsewhere.json")
    assert validate_cli(path, capsys, "--taxonomy", "elsewhere.json")[0] == 0
    write_json({"categories": tax.as_dicts()}, tmp_path / "data/taxonomy.json")
    assert validate_cli(path, capsys)[0] == 0
    write_json({"categories": taxonomy.PAPER.as_dicts()}, tmp_path / "paper.json")
    assert validate_cli(path, capsys, "--taxonomy", "paper.json")[0] == 2


# --- taxonomy.json -----------------------------------------------------------------------------

def paper() -> list[dict]:
    return taxonomy.PAPER.as_dicts()


def _with(i, **changes):
    cats = paper()
    cats[i] = dict(cats[i], **changes)
    return cats


TAXONOMY_CASES = {
    "duplicate category": (lambda: paper()[:7] + [paper()[0]] + paper()[7:],
                           "row 8: duplicate category [name]: 'Financial Crime and Theft'"),
    "missing paper category": (lambda: paper()[1:],
                               "the paper's categories must all be present [name]: 'Financial Crime and Theft'"),
    "Other Harms allowable": (lambda: _with(7, allowable=True),
                              "row 8: Other Harms is never allowable [name, allowable]: 'Other Harms | True'"),
    "Other Harms not last": (lambda: paper()[:3] + [paper()[7]] + paper()[3:7],
                             "row 4: Other Harms must be the last category [name]: 'Other Harms'"),
    "string for a boolean": (lambda: _with(0, seen="true"), "row 1: must be true or false [seen]: 'true'"),
    "NaN description": (lambda: _with(1, description=math.nan), "cannot be read as JSON: NaN is not allowed"),
    "empty name": (lambda: _with(2, name=""), "row 3: must be a non-empty string [name]: ''"),
    "null category": (lambda: paper()[:3] + [None] + paper()[3:],
                      "row 4: must be an object with name, description, seen, allowable [categories]: None"),
    "null name": (lambda: _with(0, name=None), "row 1: must be a non-empty string [name]: None"),
    "a paper category not allowable": (lambda: _with(0, allowable=False),
                                       "row 1: every category but Other Harms is allowable"),
}


@pytest.mark.parametrize("case", list(TAXONOMY_CASES))
def test_bad_taxonomy_json_gives_one_line_per_failure(case, tmp_path, capsys):
    make, expected = TAXONOMY_CASES[case]
    path = tmp_path / "taxonomy.json"
    path.write_text(json.dumps({"categories": make()}))  # json.dumps writes NaN as NaN
    code, lines = validate_cli(path, capsys)
    assert code == 2 and any(expected in line for line in lines), lines
    assert lines[0].startswith((f"{path}: ", f"error: {path}: ")) and "Traceback" not in "".join(lines)
    with pytest.raises(schemas.InputError):
        taxonomy.Taxonomy.load(path)


def test_good_taxonomy_json_passes(tmp_path, capsys):
    write_json({"categories": taxonomy.build([EXTRA]).as_dicts()}, tmp_path / "taxonomy.json")
    assert validate_cli(tmp_path / "taxonomy.json", capsys)[0] == 0
