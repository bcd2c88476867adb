"""The CoSA risk taxonomy: the paper's 7 categories plus the never-allowable catch-all.

Category names are exact strings used everywhere (lists of these names, never joined strings).
The descriptions are this project's own wording; they feed the config templates and the rules
judge's embedding classifier.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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


def categories_as_dicts() -> list[dict]:
    return [asdict(c) for c in CATEGORIES]
