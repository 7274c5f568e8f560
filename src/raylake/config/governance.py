"""Governance: PII detection and classification, policies, retention, erasure and the
OpenLineage export (the ``governance`` section; docs/governance.md).

Keys (the HMAC and tokenization key) are never config: ``governance.key_env`` names the
environment variable that holds one, and a run record names only the variable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from raylake.config.values import Choice, at_least, choice, fraction, is_set
from raylake.errors import ConfigValueError


class Entity(Choice):
    """What a recognizer finds (Presidio's entity names, so rules read the same)."""

    EMAIL_ADDRESS = "EMAIL_ADDRESS"
    PHONE_NUMBER = "PHONE_NUMBER"
    CREDIT_CARD = "CREDIT_CARD"  # Luhn-checked
    IBAN_CODE = "IBAN_CODE"  # ISO 13616 mod-97 checked
    IP_ADDRESS = "IP_ADDRESS"  # IPv4 and IPv6, each part in range
    US_SSN = "US_SSN"  # area, group and serial rules of the SSA
    PERSON = "PERSON"  # only with an NER model the user installs (scan.ner_model)
    LOCATION = "LOCATION"  # ditto


class DataClass(Choice):
    public = "public"
    internal = "internal"
    pii = "pii"
    restricted = "restricted"


# The class a column gets from the entity types found in it.
ENTITY_CLASS: dict[str, DataClass] = {
    Entity.CREDIT_CARD.value: DataClass.restricted,
    Entity.IBAN_CODE.value: DataClass.restricted,
    Entity.US_SSN.value: DataClass.restricted,
    Entity.EMAIL_ADDRESS.value: DataClass.pii,
    Entity.PHONE_NUMBER.value: DataClass.pii,
    Entity.IP_ADDRESS.value: DataClass.pii,
    Entity.PERSON.value: DataClass.pii,
    Entity.LOCATION.value: DataClass.pii,
}

PATTERN_ENTITIES = [Entity.EMAIL_ADDRESS, Entity.PHONE_NUMBER, Entity.CREDIT_CARD,
                    Entity.IBAN_CODE, Entity.IP_ADDRESS, Entity.US_SSN]


class PolicyAction(Choice):
    keep = "keep"
    mask = "mask"  # whole values: all but the last `keep_last` characters; text: each match
    hash = "hash"  # keyed HMAC-SHA256, hex; equal values stay equal (joins, erasure)
    tokenize = "tokenize"  # deterministic AES-SIV, reversible with the key
    drop = "drop"
    generalize = "generalize"  # dates and times to `unit`, numbers to `bins`


class DateUnit(Choice):
    year = "year"
    month = "month"
    day = "day"


def policy_key_names() -> list[str]:
    """What a key of ``governance.policies`` may be: a class or an entity type."""
    return [c.value for c in DataClass] + [e.value for e in Entity]


@dataclass
class PolicyConfig:
    action: PolicyAction = PolicyAction.keep
    # mask: characters left visible at the end of each value or match (e.g. a card's last 4).
    keep_last: int = 4
    mask_char: str = "*"
    # generalize: dates and timestamps are truncated to this unit...
    unit: DateUnit = DateUnit.month
    # ...numbers become the lower edge of their bin (edges ascending; below the first:
    # the first). Empty: numbers cannot be generalized.
    bins: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.action = choice(PolicyAction, self.action, "policy action")
        self.unit = choice(DateUnit, self.unit, "policy unit")
        at_least("policy keep_last", self.keep_last, 0, "4")
        if len(self.mask_char) != 1:
            raise ConfigValueError(f"policy mask_char={self.mask_char!r} must be one "
                                   "character, e.g. '*'.")
        if list(self.bins) != sorted(self.bins):
            raise ConfigValueError(f"policy bins={list(self.bins)} must be ascending, "
                                   "e.g. [0, 18, 30, 50, 70].")

    @property
    def needs_key(self) -> bool:
        """hash and tokenize need the key from ``governance.key_env``."""
        return self.action in (PolicyAction.hash, PolicyAction.tokenize)


@dataclass
class ScanConfig:
    """Detection at ingestion: a sample of each column through the recognizers."""

    enabled: bool = True
    sample_rows: int = 10_000
    entities: list[Entity] = field(default_factory=lambda: list(PATTERN_ENTITIES))
    # A column is an entity's column (e.g. an `email` column) when at least this share of
    # its sampled non-null values is one whole match; a column where any value contains
    # a match is classified by the entities found (free text that carries PII).
    min_share: float = 0.8
    # Columns where fewer than this share of values contain a match stay unclassified
    # (one stray match in a million comments is noise, not a PII column).
    min_text_share: float = 0.001
    # A spaCy model the user installed (e.g. en_core_web_sm) for PERSON and LOCATION;
    # None: names and addresses are not detected (say so in docs/governance.md).
    ner_model: Optional[str] = None
    # Columns with no finding: this class (a dataset config overrides per column).
    default_class: DataClass = DataClass.internal
    seed: int = 0

    def __post_init__(self) -> None:
        at_least("governance.scan.sample_rows", self.sample_rows, 1, "10000")
        self.entities = [choice(Entity, e, "governance.scan.entities") for e in self.entities]
        fraction("governance.scan.min_share", self.min_share)
        fraction("governance.scan.min_text_share", self.min_text_share)
        self.default_class = choice(DataClass, self.default_class,
                                    "governance.scan.default_class")


@dataclass
class RetentionConfig:
    # Rows older than this many days (by `time_column`) are deleted and vacuumed.
    days: float = 90.0
    time_column: str = "at"

    def __post_init__(self) -> None:
        at_least("retention days", self.days, 0, "90")


@dataclass
class OpenLineageConfig:
    namespace: str = "raylake"
    # Where `raylake lineage export --format openlineage` sends events when no --output
    # or --url is given on the command line; None: standard output.
    url: Optional[str] = None
    file: Optional[str] = None
    timeout_s: float = 10.0


@dataclass
class GovernanceConfig:
    scan: ScanConfig = field(default_factory=ScanConfig)
    # A class (public, internal, pii, restricted) or an entity type -> the policy applied
    # at ingestion to every column of it; a table's `policies` win per column. An entity
    # type wins over its class.
    policies: dict[str, PolicyConfig] = field(default_factory=dict)
    # The environment variable holding the key for hash and tokenize (at least 16 bytes).
    key_env: str = "RAYLAKE_GOVERNANCE_KEY"
    # Table -> retention (`raylake governance retention`), e.g. serving/requests: 90 days.
    retention: dict[str, RetentionConfig] = field(default_factory=dict)
    # Why jobs read classified columns (the audit table's `purpose`).
    purpose: str = ""
    openlineage: OpenLineageConfig = field(default_factory=OpenLineageConfig)

    def __post_init__(self) -> None:
        names = policy_key_names()
        for key in self.policies:
            if key not in names:
                from raylake.errors import did_you_mean

                raise ConfigValueError(
                    f"governance.policies.{key}: {key!r} is neither a class nor an entity "
                    f"type; use one of {', '.join(names)}.{did_you_mean(key, names)}")
        if not is_set(self.key_env) or not str(self.key_env).strip():
            raise ConfigValueError("governance.key_env must name an environment variable, "
                                   "e.g. RAYLAKE_GOVERNANCE_KEY.")
