"""The contract of every dataset the pipeline writes: one pandera DataFrameModel each.

Stages call `validate(df, "name", path)` before writing; `cosalign validate` uses the same models.
A contract covers column types, non-empty text, the category vocabulary of the taxonomy the data
was written against (`taxonomy=`, default the paper's, arXiv 2410.08968 Sec. 3), the element
types of list columns (category lists are Python lists of names, never joined strings) and the
cross-field rules (an invalid verdict carries no rating, chosen differs from rejected, Other Harms
is never allowed). A file with no rows is refused: no stage legitimately writes none.

Errors (ValidationError) read, one line per failing row and check:
    PATH: row N: CHECK [COLUMNS]: VALUE
with N the 1-based data row, COLUMNS the columns the check reads and VALUE cut to 80 characters;
at most MAX_LINES such lines, then `CHECK: K more rows` per check, then
`PATH: F failing rows (schema S)`.
"""

from __future__ import annotations

import contextvars
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import pandera.pandas as pa
    from pandera.errors import SchemaErrors
    from pandera.typing import Series

from cosalign.cosa import taxonomy
from cosalign.core.io import InputError

MODES = ("exact_match", "superset", "safe", "not_superset")
CONFIG_SETS = ("seen", "unseen", "freeform")
MAX_LINES = 20  # failure lines printed before the per-check counts
MAX_VALUE = 80  # characters of a failing value printed

# The taxonomy the frame being validated was written against (set by `validate`).
_TAXONOMY: contextvars.ContextVar[taxonomy.Taxonomy] = contextvars.ContextVar("taxonomy", default=taxonomy.PAPER)
# Row checks (pandera dataframe checks) -> the columns they read, so an error names those columns
# (pandera itself reports a dataframe check once per column of the frame).
_ROW_CHECK_COLUMNS: dict[str, tuple[str, ...]] = {}


def row_check(error: str, *columns: str):
    """A pandera dataframe check named `error` that reads `columns` (one bool per row)."""
    _ROW_CHECK_COLUMNS[error] = columns
    return pa.dataframe_check(error=error)


def _category_list(value, allowed) -> bool:
    """A real list (not a joined string) of distinct names from `allowed`."""
    return isinstance(value, list) and all(isinstance(v, str) and v in allowed for v in value) \
        and len(set(value)) == len(value)


def _not_blank(series: pd.Series) -> pd.Series:
    return series.map(lambda v: isinstance(v, str) and bool(v.strip()))


def _names() -> frozenset[str]:
    return frozenset(_TAXONOMY.get().names)


def _allowable() -> frozenset[str]:
    return _TAXONOMY.get().allowable


NOT_BLANK = "must be a non-empty string"
CATEGORIES = "must be a list of distinct category names of the taxonomy"
ALLOWABLE = "must be a list of distinct allowable category names (never Other Harms)"
SEEN = "must be a list of distinct seen category names of the taxonomy"


def _is_category_list(value) -> bool:
    return _category_list(value, _names())


def _text_check(*columns: str):
    return pa.check(*columns, error=NOT_BLANK)


class _Base(pa.DataFrameModel):
    class Config:
        strict = False  # extra columns are welcome; required ones are checked
        coerce = False


class Prompts(_Base):
    """data/prompts.parquet: one row per prompt."""
    prompt_id: Series[str] = pa.Field(unique=True)
    prompt: Series[str]
    source: Series[str]
    split: Series[str] = pa.Field(isin=["train", "test"])
    gold_categories: Series[object] = pa.Field(nullable=True)

    @pa.check("gold_categories", element_wise=True, error=CATEGORIES)
    def category_lists(cls, value) -> bool:
        return _is_category_list(value)

    @_text_check("prompt_id", "prompt", "source")
    def not_blank(cls, series: pd.Series) -> pd.Series:
        return _not_blank(series)


class PromptLabels(_Base):
    """data/prompt_labels.parquet: the judge's risk set per prompt (gold kept where known)."""
    prompt_id: Series[str] = pa.Field(unique=True)
    split: Series[str] = pa.Field(isin=["train", "test"])
    risk_categories: Series[object]
    gold_categories: Series[object] = pa.Field(nullable=True)
    valid: Series[bool]
    judge: Series[str]

    @pa.check("risk_categories", "gold_categories", element_wise=True, error=CATEGORIES)
    def category_lists(cls, value) -> bool:
        return _is_category_list(value)

    @_text_check("prompt_id", "judge")
    def not_blank(cls, series: pd.Series) -> pd.Series:
        return _not_blank(series)


class Labels(_Base):
    """Output of `cosalign label`: one row per input row, in input order."""
    prompt: Series[str]
    risk_categories: Series[object]
    valid: Series[bool]
    judge: Series[str]

    @pa.check("risk_categories", element_wise=True, error=CATEGORIES)
    def category_lists(cls, value) -> bool:
        return _is_category_list(value)

    @_text_check("prompt", "judge")
    def not_blank(cls, series: pd.Series) -> pd.Series:
        return _not_blank(series)


class Configs(_Base):
    """data/configs.parquet: sampled allowed sets (seen categories only) rendered as system prompts."""
    config_id: Series[str] = pa.Field(unique=True)
    prompt_id: Series[str]
    mode: Series[str] = pa.Field(isin=list(MODES))
    allowed_categories: Series[object]
    template_id: Series[str]
    system_prompt: Series[str]

    @pa.check("allowed_categories", element_wise=True, error=SEEN)
    def category_lists(cls, value) -> bool:
        return _category_list(value, frozenset(_TAXONOMY.get().seen))

    @_text_check("config_id", "prompt_id", "template_id", "system_prompt")
    def not_blank(cls, series: pd.Series) -> pd.Series:
        return _not_blank(series)


class GenerationConfigs(Configs):
    """data/generation_configs.parquet: the configs the responses stage generates under. Under
    `protocol: paper` drawn over every allowable category in the prompt labels, unseen ones
    included (docs/paper-fidelity.md, 7d); under `cosalign` a copy of data/configs.parquet.
    Configs' columns and checks, except that an allowed category may be any allowable one."""

    @pa.check("allowed_categories", element_wise=True, error=ALLOWABLE)
    def category_lists(cls, value) -> bool:
        return _category_list(value, _allowable())


class Responses(_Base):
    """data/responses.parquet: one row per (prompt_id, config_id, sample); a response may be empty
    (a model can answer with nothing at all)."""
    response_id: Series[str] = pa.Field(unique=True)
    prompt_id: Series[str]
    config_id: Series[str]
    sample: Series[int] = pa.Field(ge=0)
    response: Series[str]
    generator: Series[str]
    source: Series[str] = pa.Field(isin=["model", "template"])

    @_text_check("response_id", "prompt_id", "config_id", "generator")
    def not_blank(cls, series: pd.Series) -> pd.Series:
        return _not_blank(series)

    @row_check("(prompt_id, config_id, sample, source) must be unique", "prompt_id", "config_id",
               "sample", "source")
    def one_row_per_sample(cls, df: pd.DataFrame) -> pd.Series:
        return ~df.duplicated(["prompt_id", "config_id", "sample", "source"], keep="first")


class Judgments(_Base):
    """data/judgments.parquet: the judge's reading of each response; invalid ones kept and flagged
    (judges.base: an invalid verdict has no categories, addressed false and helpfulness 0)."""
    response_id: Series[str] = pa.Field(unique=True)
    risk_categories: Series[object]
    addressed: Series[bool]
    helpfulness: Series[int] = pa.Field(ge=0, le=5)
    valid: Series[bool]
    judge: Series[str]
    raw: Series[str]

    @pa.check("risk_categories", element_wise=True, error=CATEGORIES)
    def category_lists(cls, value) -> bool:
        return _is_category_list(value)

    @_text_check("response_id", "judge")
    def not_blank(cls, series: pd.Series) -> pd.Series:
        return _not_blank(series)

    @row_check("an invalid verdict has helpfulness 0, addressed false and no categories",
               "valid", "helpfulness", "addressed", "risk_categories")
    def invalid_is_empty(cls, df: pd.DataFrame) -> pd.Series:
        empty = [h == 0 and not a and isinstance(c, list) and not c for h, a, c in
                 zip(df["helpfulness"].tolist(), df["addressed"].tolist(), df["risk_categories"].tolist())]
        return df["valid"].astype(bool) | pd.Series(empty, index=df.index)


def _messages(value, roles: tuple[str, ...], blank_ok: frozenset = frozenset()) -> bool:
    """A list of {role, content} messages with exactly `roles` in order; content a string, non-blank
    except for the roles in `blank_ok`."""
    if hasattr(value, "tolist") and not isinstance(value, (str, dict)):
        value = value.tolist()
    if not isinstance(value, list) or len(value) != len(roles):
        return False
    for msg, role in zip(value, roles):
        if not isinstance(msg, dict) or msg.get("role") != role or not isinstance(msg.get("content"), str):
            return False
        if role not in blank_ok and not msg["content"].strip():
            return False
    return True


_PROMPT_ROLES, _ANSWER_ROLES = ("system", "user"), ("assistant",)
PROMPT_MESSAGES = "must be messages [system: the safety config, user: the prompt], both non-blank"
ANSWER_MESSAGE = "must be one message [assistant: non-blank text]"
_SANITIZE = {"sanitize_control_tokens": True}


class Preferences(_Base):
    """data/preferences.parquet: error-scored preference pairs (lower error chosen), in TRL's
    conversational preference format: prompt = [system (the safety config), user], chosen /
    rejected = [assistant], chat_template_kwargs = {sanitize_control_tokens: true} (TRL renders each
    row with it, so control tokens spelled inside messages stay text), then the CoSA metadata."""
    prompt: Series[object]
    chosen: Series[object]
    rejected: Series[object]
    chat_template_kwargs: Series[object]
    mode: Series[str] = pa.Field(isin=list(MODES))
    allowed_categories: Series[object]
    prompt_categories: Series[object]
    chosen_categories: Series[object]
    rejected_categories: Series[object]
    chosen_addressed: Series[bool]
    rejected_addressed: Series[bool]
    chosen_error: Series[float] = pa.Field(ge=0, lt=3)
    rejected_error: Series[float] = pa.Field(ge=0)

    @pa.check("allowed_categories", element_wise=True, error=ALLOWABLE)
    def allowed_lists(cls, value) -> bool:
        return _category_list(value, _allowable())

    @pa.check("prompt_categories", "chosen_categories", "rejected_categories", element_wise=True,
              error=CATEGORIES)
    def category_lists(cls, value) -> bool:
        return _is_category_list(value)

    @pa.check("prompt", element_wise=True, error=PROMPT_MESSAGES)
    def prompt_messages(cls, value) -> bool:
        return _messages(value, _PROMPT_ROLES)

    @pa.check("chosen", "rejected", element_wise=True, error=ANSWER_MESSAGE)
    def answer_messages(cls, value) -> bool:
        return _messages(value, _ANSWER_ROLES)

    @pa.check("chat_template_kwargs", element_wise=True, error="must be {sanitize_control_tokens: true}")
    def sanitized(cls, value) -> bool:
        return value == _SANITIZE

    @row_check("chosen must differ from rejected", "chosen", "rejected")
    def a_real_pair(cls, df: pd.DataFrame) -> pd.Series:
        return pd.Series([c != r for c, r in zip(df["chosen"].tolist(), df["rejected"].tolist())], index=df.index)

    @row_check("chosen_error must be lower than rejected_error", "chosen_error", "rejected_error")
    def chosen_better(cls, df: pd.DataFrame) -> pd.Series:
        return df["chosen_error"] < df["rejected_error"]

    @row_check("chosen_error/rejected_error must equal the error formula", "allowed_categories",
               "chosen_categories", "chosen_addressed", "chosen_error", "rejected_categories",
               "rejected_addressed", "rejected_error")
    def errors_match_formula(cls, df: pd.DataFrame) -> pd.Series:
        from cosalign.cosa.error_score import error_score
        names, ok = _names(), []
        for row in df.itertuples(index=False):
            lists = (row.allowed_categories, row.chosen_categories, row.rejected_categories)
            if not all(_category_list(v, names) for v in lists):
                ok.append(True)  # the category-list checks report this row; no formula to apply
                continue
            tax = _TAXONOMY.get()
            c = error_score(row.chosen_categories, row.chosen_addressed, row.allowed_categories, taxonomy=tax)
            r = error_score(row.rejected_categories, row.rejected_addressed, row.allowed_categories, taxonomy=tax)
            ok.append(abs(c - row.chosen_error) < 1e-9 and abs(r - row.rejected_error) < 1e-9)
        return pd.Series(ok, index=df.index)


class EvalItems(_Base):
    """reports/eval/<model>.parquet and reports/eval_items.parquet: one judged item per row;
    helpfulness is present exactly when the verdict is valid (evaluation.evaluate)."""
    model: Series[str]
    benchmark: Series[str]
    config_id: Series[str]
    config_set: Series[str] = pa.Field(isin=list(CONFIG_SETS))
    allowed_categories: Series[object] = pa.Field(nullable=True)
    prompt: Series[str]
    response: Series[str]
    helpfulness: Series[pd.Int64Dtype] = pa.Field(nullable=True, ge=0, le=5)
    response_categories: Series[object]
    safe: Series[bool]
    valid: Series[bool]
    judge: Series[str]

    @pa.check("allowed_categories", element_wise=True, error=ALLOWABLE)
    def allowed_lists(cls, value) -> bool:
        return _category_list(value, _allowable())

    @pa.check("response_categories", element_wise=True, error=CATEGORIES)
    def category_lists(cls, value) -> bool:
        return _is_category_list(value)

    @_text_check("model", "benchmark", "config_id", "prompt", "judge")
    def not_blank(cls, series: pd.Series) -> pd.Series:
        return _not_blank(series)

    @row_check("helpfulness must be present exactly when valid", "valid", "helpfulness")
    def rated_when_valid(cls, df: pd.DataFrame) -> pd.Series:
        return df["valid"].astype(bool) == df["helpfulness"].notna()


SCHEMAS: dict[str, type[pa.DataFrameModel]] = {
    "prompts": Prompts,
    "prompt_labels": PromptLabels,
    "labels": Labels,
    "configs": Configs,
    "generation_configs": GenerationConfigs,
    "responses": Responses,
    "judgments": Judgments,
    "preferences": Preferences,
    "eval_items": EvalItems,
}


class _Shown(str):
    """A value already formatted for a failure line (several columns' values joined)."""


def _short(value) -> str:
    if isinstance(value, np.generic):
        value = value.item()  # 5, not np.int64(5)
    text = value if isinstance(value, _Shown) else repr(value)  # quotes show a blank string
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 3] + "..."


class ValidationError(InputError):
    """A dataset broke its schema. `failures`: dicts with row (1-based, None for a whole-column
    failure), check, columns and value; the message has the format in the module docstring.
    `n_rows`: the file's row count, which a whole-column failure (a missing column, a wrong
    dtype) makes every row fail."""

    def __init__(self, path, schema: str, failures: list[dict], n_rows: int | None = None):
        failures = sorted(failures, key=lambda f: (f["row"] is not None, f["row"] or 0, f["check"]))
        lines, hidden = [], {}
        for f in failures:
            if len(lines) < MAX_LINES:
                where = f"row {f['row']}: " if f["row"] is not None else ""
                lines.append(f"{path}: {where}{f['check']} [{', '.join(f['columns'])}]: {_short(f['value'])}")
            else:
                hidden.setdefault(f["check"], set()).add(f["row"])
        lines += [f"{check}: {len(rows)} more rows" for check, rows in hidden.items()]
        rows = {f["row"] for f in failures if f["row"] is not None}
        whole = n_rows is not None and any(f["row"] is None for f in failures)
        lines.append(f"{path}: {n_rows if whole else len(rows)} failing rows (schema {schema})")
        ValueError.__init__(self, "\n".join(lines))
        self.path, self.schema, self.failures = str(path), schema, failures
        self.row, self.field = failures[0]["row"], ", ".join(failures[0]["columns"])


def _failures(exc: SchemaErrors, df: pd.DataFrame) -> list[dict]:
    """One failure per (row, check): pandera reports a dataframe check once per column."""
    out, seen = [], set()
    for rec in exc.failure_cases.to_dict("records"):
        idx, check = rec.get("index"), str(rec.get("check"))
        row = None if idx is None or (isinstance(idx, float) and math.isnan(idx)) else int(idx) + 1
        if check in _ROW_CHECK_COLUMNS:
            columns = _ROW_CHECK_COLUMNS[check]
            if (row, check, columns) in seen or any(c not in df.columns for c in columns):
                continue  # a missing column is reported once, as such
            if row is not None:  # the values the check read, each shown as _short shows one
                value = _Shown(" | ".join(_short(df.at[row - 1, c]) for c in columns))
            else:
                value = rec.get("failure_case")
        else:
            column = rec.get("column")
            if rec.get("schema_context") == "DataFrameSchema" and check == "column_in_dataframe":
                column, value = rec.get("failure_case"), "missing column"
            else:
                value = rec.get("failure_case")
            if check.startswith("dtype("):  # dtype('object') -> must have dtype object
                check = f"must have dtype {check[6:-1].strip(chr(39))}"
            columns = (str(column),)
        seen.add((row, check, columns))
        out.append({"row": row, "check": check, "columns": columns, "value": value})
    return out


def validate(df: pd.DataFrame, schema: str, path="<dataframe>", *, taxonomy: taxonomy.Taxonomy | None = None,
             first_row: int = 0) -> pd.DataFrame:
    """Check `df` against `schema` lazily (every failure at once) and return it unchanged.

    taxonomy: the category vocabulary (default: the paper's). first_row: the 0-based position of
    df's first row in its file, for streamed chunks. Raises ValidationError.
    """
    model = SCHEMAS[schema]
    view = df.set_axis(pd.RangeIndex(first_row, first_row + len(df)))
    token = _TAXONOMY.set(taxonomy or _default_taxonomy())
    try:
        model.validate(view, lazy=True)
    except SchemaErrors as exc:
        raise ValidationError(path, schema, _failures(exc, view), len(df)) from None
    finally:
        _TAXONOMY.reset(token)
    return df


def _default_taxonomy() -> "taxonomy.Taxonomy":
    return taxonomy.PAPER


def require_rows(n: int, schema: str, path) -> None:
    """A file with no rows is refused: no stage legitimately writes none."""
    if n == 0:
        raise InputError(path, f"has no rows (schema {schema} needs at least one)")


def write_dataset(chunks, schema: str, path: str | Path, *, taxonomy: taxonomy.Taxonomy | None = None) -> int:
    """Validate each chunk against `schema` and stream it to the parquet file `path`; returns rows.

    Memory holds one chunk. Rows are numbered across chunks, so an error names the row in the
    file; columns declared unique are also checked across chunks (only their values are kept).
    Nothing reaches `path` unless every chunk passes and there is at least one row
    (io.ParquetSink renames on success only).
    """
    from cosalign.core.io import ParquetSink

    unique = [name for name, col in SCHEMAS[schema].to_schema().columns.items() if col.unique]
    seen: dict[str, set] = {name: set() for name in unique}
    with ParquetSink(path) as sink:
        for chunk in chunks:
            validate(chunk, schema, path, taxonomy=taxonomy, first_row=sink.rows)
            for name in unique:
                values = chunk[name].tolist()
                dupes = [(sink.rows + i + 1, v) for i, v in enumerate(values) if v in seen[name]]
                if dupes:
                    raise ValidationError(path, schema, [{"row": r, "columns": (name,), "check": "field_uniqueness",
                                                          "value": v} for r, v in dupes])
                seen[name].update(values)
            sink.write(chunk)
        require_rows(sink.rows, schema, path)
    return sink.rows


def schema_for_path(path: str | Path) -> str:
    """Pick the schema from a file's base name: data/prompts.parquet -> prompts, reports/eval/x -> eval_items."""
    path = Path(path)
    stem = path.stem
    if stem in SCHEMAS or stem == "taxonomy":
        return stem
    if path.parent.name == "eval":
        return "eval_items"
    raise InputError(path, f"no schema is named after this file; pass --schema (one of "
                           f"{sorted(SCHEMAS) + ['taxonomy']})")


_CATEGORY_KEYS = {"name": str, "description": str, "seen": bool, "allowable": bool}


def _taxonomy_failures(obj) -> list[dict]:
    """Failures of a taxonomy.json object (rows = 1-based entries of `categories`)."""
    cats = obj.get("categories") if isinstance(obj, dict) else None
    if not isinstance(cats, list):
        return [{"row": None, "check": "must be a list of category objects", "columns": ("categories",),
                 "value": cats}]
    out, names = [], []

    def fail(row, check, columns, value):
        out.append({"row": row, "check": check, "columns": columns, "value": value})

    for row, cat in enumerate(cats, start=1):
        if not isinstance(cat, dict):
            fail(row, "must be an object with name, description, seen, allowable", ("categories",), cat)
            continue
        for key, kind in _CATEGORY_KEYS.items():
            value = cat.get(key)
            if key not in cat:
                fail(row, "missing key", (key,), None)
            elif kind is bool and not isinstance(value, bool):
                fail(row, "must be true or false", (key,), value)
            elif kind is str and not (isinstance(value, str) and value.strip()):
                fail(row, NOT_BLANK, (key,), value)
        name = cat.get("name")
        if isinstance(name, str) and name.strip():
            if name in names:
                fail(row, "duplicate category", ("name",), name)
            names.append(name)
            other = name == taxonomy.OTHER
            if isinstance(cat.get("allowable"), bool) and cat["allowable"] == other:
                check = "Other Harms is never allowable" if other else "every category but Other Harms is allowable"
                fail(row, check, ("name", "allowable"), f"{name} | {cat['allowable']}")
            if other and row != len(cats):
                fail(row, "Other Harms must be the last category", ("name",), name)
    missing = [n for n in taxonomy.NAMES if n not in names]
    if missing:
        fail(None, "the paper's categories must all be present", ("name",), ", ".join(missing))
    return out


def validate_taxonomy(obj: dict, path="<taxonomy>") -> dict:
    """data/taxonomy.json: named, described categories with bool flags, no duplicates, every paper
    category present, every category allowable but Other Harms, which comes last (arXiv
    2410.08968 Sec. 3: the catch-all no config may allow). Raises ValidationError."""
    failures = _taxonomy_failures(obj)
    if failures:
        raise ValidationError(path, "taxonomy", failures)
    return obj


def read_taxonomy_json(path: str | Path) -> dict:
    """The parsed object of a taxonomy.json file (NaN and Infinity refused), or InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file does not exist")

    def no_constants(name):
        raise ValueError(f"{name} is not allowed in taxonomy.json")

    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=no_constants)
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot be read as JSON: {exc}") from None


def validate_file(path: str | Path, schema: str | None = None, *, taxonomy_path: str | Path | None = None) -> int:
    """Validate an artifact file; returns its row count or raises InputError/ValidationError.

    Category names are checked against `taxonomy_path` (a taxonomy.json); None: the paper's.
    """
    from cosalign.core.io import read_parquet, read_table
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    schema = schema or schema_for_path(path)
    if schema == "taxonomy":
        obj = validate_taxonomy(read_taxonomy_json(path), path)
        return len(obj["categories"])
    tax = taxonomy.Taxonomy.load(taxonomy_path) if taxonomy_path is not None else None
    if path.suffix == ".parquet":
        df = read_parquet(path)
    else:
        df = read_table(path)  # refuses a file with no rows itself
    require_rows(len(df), schema, path)
    validate(df, schema, path, taxonomy=tax)
    return len(df)
