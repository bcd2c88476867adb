"""The contract of every dataset the pipeline writes: one pandera DataFrameModel each.

Stages call `validate(df, "name", path)` before writing; `cosalign validate` uses the same models.
Category lists are object columns holding Python lists of taxonomy names (never joined strings);
`_category_list` checks each element.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import pandera.pandas as pa
    from pandera.errors import SchemaErrors
    from pandera.typing import Series

from cosalign.cosa import taxonomy
from cosalign.core.io import InputError

_NAMES = frozenset(taxonomy.NAMES)
MODES = ("exact_match", "superset", "safe", "not_superset")
CONFIG_SETS = ("seen", "unseen", "freeform")


def _category_list(value, allowed=_NAMES) -> bool:
    """A real list (not a joined string) of distinct names from `allowed`."""
    return isinstance(value, list) and all(isinstance(v, str) and v in allowed for v in value) \
        and len(set(value)) == len(value)


def _not_blank(series: pd.Series) -> pd.Series:
    return series.str.strip().str.len() > 0


_SEEN = frozenset(taxonomy.SEEN)
_LIST_ERROR = "must be a list of distinct taxonomy category names"


class _Base(pa.DataFrameModel):
    class Config:
        strict = False  # extra columns are welcome; required ones are checked
        coerce = False


class Prompts(_Base):
    """data/prompts.parquet: one row per prompt."""
    prompt_id: Series[str] = pa.Field(unique=True)
    prompt: Series[str] = pa.Field(str_length={"min_value": 1})
    source: Series[str]
    split: Series[str] = pa.Field(isin=["train", "test"])
    gold_categories: Series[object] = pa.Field(nullable=True)

    @pa.check("gold_categories", element_wise=True, error=_LIST_ERROR)
    def category_lists(cls, value) -> bool:
        return _category_list(value)

    @pa.check("prompt", error="must not be empty or blank")
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

    @pa.check("risk_categories", "gold_categories", element_wise=True, error=_LIST_ERROR)
    def category_lists(cls, value) -> bool:
        return _category_list(value)


class Labels(_Base):
    """Output of `cosalign label`: one row per input row, in input order."""
    prompt: Series[str]
    risk_categories: Series[object]
    valid: Series[bool]
    judge: Series[str]

    @pa.check("risk_categories", element_wise=True, error=_LIST_ERROR)
    def category_lists(cls, value) -> bool:
        return _category_list(value)


class Configs(_Base):
    """data/configs.parquet: sampled allowed sets (seen categories only) rendered as system prompts."""
    config_id: Series[str] = pa.Field(unique=True)
    prompt_id: Series[str]
    mode: Series[str] = pa.Field(isin=list(MODES))
    allowed_categories: Series[object]
    template_id: Series[str]
    system_prompt: Series[str] = pa.Field(str_length={"min_value": 1})

    @pa.check("allowed_categories", element_wise=True, error=_LIST_ERROR)
    def category_lists(cls, value) -> bool:
        return _category_list(value, _SEEN)


class Responses(_Base):
    """data/responses.parquet: one row per (prompt_id, config_id, sample)."""
    response_id: Series[str] = pa.Field(unique=True)
    prompt_id: Series[str]
    config_id: Series[str]
    sample: Series[int] = pa.Field(ge=0)
    response: Series[str]
    generator: Series[str]
    source: Series[str] = pa.Field(isin=["model", "template"])

    @pa.dataframe_check(error="(prompt_id, config_id, sample, source) must be unique")
    def one_row_per_sample(cls, df: pd.DataFrame) -> bool:
        return not df.duplicated(["prompt_id", "config_id", "sample", "source"]).any()


class Judgments(_Base):
    """data/judgments.parquet: the judge's reading of each response; invalid ones kept and flagged."""
    response_id: Series[str] = pa.Field(unique=True)
    risk_categories: Series[object]
    addressed: Series[bool]
    helpfulness: Series[int] = pa.Field(ge=0, le=5)
    valid: Series[bool]
    judge: Series[str]
    raw: Series[str]

    @pa.check("risk_categories", element_wise=True, error=_LIST_ERROR)
    def category_lists(cls, value) -> bool:
        return _category_list(value)


def _messages(value, roles: tuple[str, ...], blank_ok: frozenset = frozenset()) -> bool:
    """A list of {role, content} messages with exactly `roles` in order; content a string, non-blank
    except for the roles in `blank_ok` (a model may answer with nothing, and that is data)."""
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

    @pa.check("allowed_categories", "prompt_categories", "chosen_categories", "rejected_categories", element_wise=True, error=_LIST_ERROR)
    def category_lists(cls, value) -> bool:
        return _category_list(value)

    @pa.check("prompt", element_wise=True,
              error="must be messages [system: the safety config, user: the prompt], both non-blank")
    def prompt_messages(cls, value) -> bool:
        return _messages(value, _PROMPT_ROLES)

    @pa.check("chosen", "rejected", element_wise=True, error="must be one message [assistant: text]")
    def answer_messages(cls, value) -> bool:
        return _messages(value, _ANSWER_ROLES, blank_ok=frozenset(_ANSWER_ROLES))

    @pa.check("chat_template_kwargs", element_wise=True, error="must be {sanitize_control_tokens: true}")
    def sanitized(cls, value) -> bool:
        return value == _SANITIZE

    @pa.dataframe_check(error="chosen_error must be lower than rejected_error")
    def chosen_better(cls, df: pd.DataFrame) -> pd.Series:
        return df["chosen_error"] < df["rejected_error"]

    @pa.dataframe_check(error="chosen_error/rejected_error must equal the error formula")
    def errors_match_formula(cls, df: pd.DataFrame) -> pd.Series:
        from cosalign.cosa.error_score import error_score
        ok = []
        for row in df.itertuples(index=False):
            c = error_score(row.chosen_categories, row.chosen_addressed, row.allowed_categories)
            r = error_score(row.rejected_categories, row.rejected_addressed, row.allowed_categories)
            ok.append(abs(c - row.chosen_error) < 1e-9 and abs(r - row.rejected_error) < 1e-9)
        return pd.Series(ok, index=df.index)


class EvalItems(_Base):
    """reports/eval/<model>.parquet and reports/eval_items.parquet: one judged item per row."""
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

    @pa.check("allowed_categories", "response_categories", element_wise=True, error=_LIST_ERROR)
    def category_lists(cls, value) -> bool:
        return _category_list(value)


SCHEMAS: dict[str, type[pa.DataFrameModel]] = {
    "prompts": Prompts,
    "prompt_labels": PromptLabels,
    "labels": Labels,
    "configs": Configs,
    "responses": Responses,
    "judgments": Judgments,
    "preferences": Preferences,
    "eval_items": EvalItems,
}


class ValidationError(InputError):
    """A dataset broke its schema; `failures` lists (row, column, check, value) for every failure."""

    def __init__(self, path, schema: str, failures: list[dict]):
        lines = [f"  row {f['row']}, column {f['column']!r}: {f['check']} (value: {f['value']!r})"
                 for f in failures[:50]]
        more = f"\n  ... and {len(failures) - 50} more" if len(failures) > 50 else ""
        ValueError.__init__(self, f"{path}: {len(failures)} failure(s) against schema "
                                  f"{schema!r}:\n" + "\n".join(lines) + more)
        self.path, self.row, self.field = str(path), failures[0]["row"], failures[0]["column"]
        self.failures = failures


def validate(df: pd.DataFrame, schema: str, path="<dataframe>") -> pd.DataFrame:
    """Validate lazily (every failure at once); raise ValidationError naming rows and columns."""
    model = SCHEMAS[schema]
    try:
        return model.validate(df, lazy=True)
    except SchemaErrors as exc:
        failures = []
        for rec in exc.failure_cases.to_dict("records"):
            idx = rec.get("index")
            failures.append({
                "row": None if idx is None or (isinstance(idx, float) and pd.isna(idx)) else int(idx),
                "column": rec.get("column"),
                "check": str(rec.get("check")),
                "value": rec.get("failure_case"),
            })
        raise ValidationError(path, schema, failures) from None


def write_dataset(chunks, schema: str, path: str | Path) -> int:
    """Validate each chunk against `schema` and stream it to the parquet file `path`; returns rows.

    Memory holds one chunk. Rows are numbered across chunks, so an error names the row in the
    file; columns declared unique are also checked across chunks (only their values are kept).
    Nothing reaches `path` unless every chunk passes (io.ParquetSink renames on success only).
    """
    from cosalign.core.io import ParquetSink

    unique = [name for name, col in SCHEMAS[schema].to_schema().columns.items() if col.unique]
    seen: dict[str, set] = {name: set() for name in unique}
    with ParquetSink(path) as sink:
        for chunk in chunks:
            chunk = chunk.set_axis(pd.RangeIndex(sink.rows, sink.rows + len(chunk)))
            chunk = validate(chunk, schema, path)
            for name in unique:
                values = chunk[name].tolist()
                dupes = [(row, v) for row, v in zip(chunk.index, values) if v in seen[name]]
                if dupes:
                    raise ValidationError(path, schema, [{"row": int(r), "column": name, "check": "field_uniqueness",
                                                          "value": v} for r, v in dupes])
                seen[name].update(values)
            sink.write(chunk)
    return sink.rows


def schema_for_path(path: str | Path) -> str:
    """Pick the schema from a file's base name: data/prompts.parquet -> prompts, reports/eval/x -> eval_items."""
    path = Path(path)
    stem = path.stem
    if stem in SCHEMAS:
        return stem
    if path.parent.name == "eval":
        return "eval_items"
    raise KeyError(f"{path}: no schema named {stem!r}; pass --schema (one of {sorted(SCHEMAS)})")


def validate_taxonomy(obj: dict, path="<taxonomy>") -> dict:
    """data/taxonomy.json: the 8 categories in order, Other Harms never allowable."""
    cats = obj.get("categories") if isinstance(obj, dict) else None
    if not isinstance(cats, list):
        raise InputError(path, "missing list", field="categories")
    for i, cat in enumerate(cats):
        for key in ("name", "description", "seen", "allowable"):
            if key not in cat:
                raise InputError(path, "missing key", row=i, field=key)
    names = [c["name"] for c in cats]
    missing = [n for n in taxonomy.NAMES if n not in names]
    if missing:
        raise InputError(path, f"the paper's categories are missing: {missing}", field="categories")
    other = next(c for c in cats if c["name"] == taxonomy.OTHER)
    if other["allowable"]:
        raise InputError(path, "Other Harms must never be allowable", field="allowable")
    return obj


def validate_file(path: str | Path, schema: str | None = None) -> int:
    """Validate an artifact file; returns its row count or raises InputError/ValidationError."""
    from cosalign.core.io import read_parquet, read_table
    path = Path(path)
    if (schema or path.stem) == "taxonomy":
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(path, f"cannot be read as JSON: {exc}") from None
        validate_taxonomy(obj, path)
        return len(obj["categories"])
    schema = schema or schema_for_path(path)
    df = read_parquet(path) if path.suffix == ".parquet" else read_table(path)
    validate(df, schema, path)
    return len(df)
