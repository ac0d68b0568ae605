"""The loss report: what did not cross between Ferry and OneRoster, per entity and field,
with a count and a sample of the records concerned (their natural keys or sourcedIds)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

SAMPLE = 5

# Why something did not cross, as a machine reason a page words in its own language
# (why_<reason> in its string tables; listed in ferry.errors.REASONS): the start of each
# reason's English text -> its reason. A reason not listed here is LOSS_OTHER (a test
# walks every loss.add of ferry/oneroster and fails on one).
REASON_CODES: tuple[tuple[str, str], ...] = (
    ("Ferry has no semester dates", "LOSS_NO_DATES"),
    ("no OneRoster column", "LOSS_EXTENSION"),
    ("OneRoster's enabledUser", "LOSS_ENABLED"),
    ("not a CEDS grade level", "LOSS_NO_GRADE_LEVEL"),
    ("differs from its line item's resultValueMax", "LOSS_MAX_SCORE"),
    ("differs from its line item's category weight", "LOSS_WEIGHT"),
    ("no date in Ferry", "LOSS_NO_DAY"),
    ("OneRoster has no creation time", "LOSS_CREATED"),
    ("a blank name", "LOSS_BLANK_TEACHER"),
    ("OneRoster has no such records", "LOSS_NO_RECORDS"),
    ("only sessions of type term or semester", "LOSS_SESSION_TYPE"),
    ("only students and teachers cross", "LOSS_ROLE"),
    ("a teacher crosses only as the name", "LOSS_TEACHER"),
    ("no term or semester among", "LOSS_NO_TERM"),
    ("Ferry keeps one teacher per course", "LOSS_ONE_TEACHER"),
    ("only the enrollments of students", "LOSS_NOT_STUDENT_ENROLLMENT"),
    ("its class was not imported", "LOSS_PARENT_MISSING"),
    ("its line item or class was not imported", "LOSS_PARENT_MISSING"),
    ("its user is not a student", "LOSS_NOT_STUDENT"),
    ("no score", "LOSS_NO_SCORE"),
    ("missing: 100 assumed", "LOSS_MAX_ASSUMED"),
    ("Ferry has no place for it", "LOSS_NO_PLACE"),
)
OTHER = "LOSS_OTHER"


def code_of(reason: str) -> str:
    """The machine reason of a loss's English reason (LOSS_OTHER for one not listed)."""
    return next((code for start, code in REASON_CODES if reason.startswith(start)), OTHER)


@dataclass
class Loss:
    entity: str  # a Ferry entity (export) or a OneRoster table (import)
    field: str  # "" when whole records did not cross
    count: int = 0
    sample: list[str] = dataclasses.field(default_factory=list)
    reason: str = ""

    @property
    def code(self) -> str:
        return code_of(self.reason)

    def add(self, key: str) -> None:
        self.count += 1
        if len(self.sample) < SAMPLE:
            self.sample.append(key)

    def __str__(self) -> str:
        what = f"{self.entity}.{self.field}" if self.field else self.entity
        return f"{what}: {self.count} — {self.reason} (e.g. {', '.join(self.sample)})"


@dataclass
class LossReport:
    direction: str  # "export" (Ferry -> OneRoster) or "import" (OneRoster -> Ferry)
    losses: dict[tuple[str, str], Loss] = dataclasses.field(default_factory=dict)

    def add(self, entity: str, fld: str, key: str, reason: str) -> None:
        loss = self.losses.get((entity, fld))
        if loss is None:
            loss = self.losses[(entity, fld)] = Loss(entity, fld, reason=reason)
        loss.add(key)

    def items(self) -> list[Loss]:
        return sorted(self.losses.values(), key=lambda x: (x.entity, x.field))

    def count(self, entity: str, fld: str = "") -> int:
        loss = self.losses.get((entity, fld))
        return 0 if loss is None else loss.count

    def lines(self) -> list[str]:
        return [str(x) for x in self.items()]
