"""The loss report: what did not cross between Ferry and OneRoster, per entity and field,
with a count and a sample of the records concerned (their natural keys or sourcedIds)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

SAMPLE = 5


@dataclass
class Loss:
    entity: str  # a Ferry entity (export) or a OneRoster table (import)
    field: str  # "" when whole records did not cross
    count: int = 0
    sample: list[str] = dataclasses.field(default_factory=list)
    reason: str = ""

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
