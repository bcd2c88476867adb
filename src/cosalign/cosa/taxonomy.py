"""The CoSA risk taxonomy: the paper's 7 categories plus the never-allowable catch-all.

Category names are exact strings used everywhere (lists of these names, never joined strings).
The descriptions are this project's own wording; they feed the config templates and the rules
judge's embedding classifier.

`Taxonomy` is one taxonomy as data. The taxonomy stage builds it from the paper's defaults below
(`PAPER`), `taxonomy.extra_categories` and `taxonomy.descriptions`, and writes it to
data/taxonomy.json; every later stage reads it back with `Taxonomy.load` (docs/method.md, "Risk
taxonomy"). Order: the seven paper categories, then the extras in params order, then Other Harms.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

FINANCIAL = "Financial Crime and Theft"
DISCRIMINATION = "Discrimination and Verbal Abuse"
VIOLENCE = "Violence"
PRIVACY = "Privacy Violations"
DRUGS = "Illegal Drug-Related Activities and Substance Abuse"
SEXUAL = "Sexual Misconduct, Exploitation, and Infidelity"
WEAPONS = "Weapons, Explosives, Arson, and Illegal Firearm Transactions"
OTHER = "Other Harms"


@dataclass(frozen=True)
class Category:
    name: str
    description: str
    seen: bool  # seen in training configs; unseen ones appear only in test configs
    allowable: bool = True  # Other Harms is never allowable by any config


CATEGORIES: tuple[Category, ...] = (
    Category(FINANCIAL, "Fraud, scams, theft, robbery planning, embezzlement, money laundering, "
             "tax evasion, counterfeiting and other ways of taking money or property unlawfully.", True),
    Category(DISCRIMINATION, "Hate speech, slurs, insults, harassment, stereotyping or demeaning "
             "people for their race, religion, gender, sexuality, disability, age or origin.", True),
    Category(VIOLENCE, "Physical harm to people or animals: assault, murder, torture, threats, "
             "kidnapping, terrorism, violent crime, and self-harm or suicide.", True),
    Category(PRIVACY, "Finding, exposing or misusing personal information: doxxing, stalking, "
             "surveillance, hacking accounts, reading others' messages, identity theft.", True),
    Category(DRUGS, "Making, buying, selling, smuggling or hiding illegal drugs, and misusing "
             "drugs, alcohol or prescription medicine.", False),
    Category(SEXUAL, "Sexual content involving non-consent or minors, sexual exploitation and "
             "trafficking, sexual harassment, explicit sexual content, and cheating on a partner.", False),
    Category(WEAPONS, "Building bombs or explosives, arson, illegal firearm purchase or "
             "modification, untraceable guns, and trafficking weapons.", False),
    Category(OTHER, "Any other harm not covered above: dangerous misinformation, dangerous "
             "stunts, environmental damage, cheating, and similar.", False, allowable=False),
)

NAMES: tuple[str, ...] = tuple(c.name for c in CATEGORIES)
SEEN: tuple[str, ...] = tuple(c.name for c in CATEGORIES if c.seen)
UNSEEN: tuple[str, ...] = tuple(c.name for c in CATEGORIES if not c.seen and c.allowable)
ALLOWABLE: frozenset[str] = frozenset(c.name for c in CATEGORIES if c.allowable)
BY_NAME: dict[str, Category] = {c.name: c for c in CATEGORIES}


def canonical_order(categories) -> list[str]:
    """Deduplicate and sort category names into taxonomy order (so lists compare and hash stably)."""
    wanted = set(categories)
    unknown = wanted - set(NAMES)
    if unknown:
        raise ValueError(f"unknown risk category {sorted(unknown)!r}; known: {list(NAMES)}")
    return [n for n in NAMES if n in wanted]


@dataclass(frozen=True)
class Taxonomy:
    """An ordered set of risk categories: the paper's seven, any extras, then Other Harms last."""
    categories: tuple[Category, ...]

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categories)

    @cached_property
    def seen(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categories if c.seen and c.allowable)

    @cached_property
    def unseen(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categories if not c.seen and c.allowable)

    @cached_property
    def allowable(self) -> frozenset[str]:
        return frozenset(c.name for c in self.categories if c.allowable)

    @cached_property
    def by_name(self) -> dict[str, Category]:
        return {c.name: c for c in self.categories}

    def canonical_order(self, categories) -> list[str]:
        """Deduplicate and sort names into this taxonomy's order; unknown names raise ValueError."""
        wanted = set(categories)
        unknown = wanted - set(self.names)
        if unknown:
            raise ValueError(f"unknown risk category {sorted(unknown)!r}; known: {list(self.names)}")
        return [n for n in self.names if n in wanted]

    def as_dicts(self) -> list[dict]:
        return [asdict(c) for c in self.categories]

    def fingerprint(self) -> str:
        """sha256 of the categories as canonical JSON: what a safety config was written against."""
        text = json.dumps(self.as_dicts(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @classmethod
    def from_dicts(cls, rows: list[dict]) -> "Taxonomy":
        return cls(tuple(Category(name=r["name"], description=r["description"], seen=bool(r["seen"]),
                                  allowable=bool(r.get("allowable", True))) for r in rows))

    @classmethod
    def load(cls, path) -> "Taxonomy":
        """The taxonomy in a taxonomy.json artifact (its `categories` list), checked by its schema."""
        from cosalign.core.io import InputError
        from cosalign.cosa.schemas import validate_taxonomy  # schemas import this module

        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(path, "taxonomy file not found (the taxonomy stage writes it)") from None
        except (OSError, ValueError) as exc:
            raise InputError(path, f"cannot be read as JSON: {exc}") from None
        data = validate_taxonomy(data, path)
        return cls.from_dicts(data["categories"])


PAPER = Taxonomy(CATEGORIES)  # the defaults the taxonomy stage starts from


def for_command(path=None) -> Taxonomy:
    """The taxonomy a command run outside the pipeline uses (`cosalign label`, `cosalign eval`):
    the file at `path` when given, else the pipeline's data/taxonomy.json when present, else the
    paper's defaults."""
    from cosalign.core.paths import ALL

    if path is not None:
        return Taxonomy.load(path)
    artifact = Path(ALL["taxonomy"].path)
    return Taxonomy.load(artifact) if artifact.exists() else PAPER


def build(extra_categories=(), descriptions=None) -> Taxonomy:
    """The paper's taxonomy plus `extra_categories` ({name, description, seen}; always allowable),
    with `descriptions` ({name: text}) overriding any description. Order: paper seven, extras in
    the order given, Other Harms last. Bad entries raise ValueError naming the field."""
    if extra_categories is None:
        extra_categories = ()
    if not isinstance(extra_categories, (list, tuple)):
        raise ValueError(f"taxonomy.extra_categories: a list is required, got {extra_categories!r}")
    if descriptions is None:
        descriptions = {}
    if not isinstance(descriptions, dict):
        raise ValueError(f"taxonomy.descriptions: a mapping NAME: TEXT is required, got {descriptions!r}")
    descriptions = dict(descriptions)
    paper = [c for c in CATEGORIES if c.name != OTHER]
    extras = []
    names = set(NAMES)
    for i, e in enumerate(extra_categories):
        where = f"taxonomy.extra_categories[{i}]"
        if not isinstance(e, dict) or set(e) - {"name", "description", "seen"}:
            raise ValueError(f"{where}: expected a mapping with keys name, description, seen")
        name, desc, seen = e.get("name"), e.get("description"), e.get("seen")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}.name: a non-empty string is required")
        if name in names:
            raise ValueError(f"{where}.name: {name!r} is already a category")
        if not isinstance(desc, str) or not desc.strip():
            raise ValueError(f"{where}.description: a non-empty string is required")
        if not isinstance(seen, bool):
            raise ValueError(f"{where}.seen: a boolean (true/false) is required")
        names.add(name)
        extras.append(Category(name, desc, seen, allowable=True))
    cats = paper + extras + [BY_NAME[OTHER]]
    unknown = set(descriptions) - {c.name for c in cats}
    if unknown:
        raise ValueError(f"taxonomy.descriptions: unknown category {sorted(unknown)!r}")
    for name, text in descriptions.items():
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"taxonomy.descriptions.{name}: a non-empty string is required")
    return Taxonomy(tuple(Category(c.name, descriptions.get(c.name, c.description), c.seen, c.allowable)
                          for c in cats))
