"""What `ferry serve` (and so `make run`) prints once everything is up. The README shows
this block; tests/readme/test_readme.py renders it here from ferry.yaml and compares."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Running:
    grpc: str  # host:port
    services: list[str]
    database: str
    metrics: str = ""  # the /metrics URL, "" when metrics are off
    web: str = ""  # the page's URL, "" without the gateway
    schedules: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)  # notify's, when it is served here


def banner(r: Running) -> str:
    lines = [f"gRPC    {r.grpc}  ({', '.join(r.services)})"]
    if r.metrics:
        lines.append(f"metrics {r.metrics}")
    if r.web:
        lines.append(f"web     {r.web}  (API docs: /docs)")
    lines.append(f"database {r.database}")
    if r.channels:
        mail = [c for c in r.channels if c != "log"]
        lines.append(
            f"notify  {', '.join(r.channels)}"
            + ("" if mail else "  (no mail channel: notices are logged, not sent)")
        )
    if r.schedules:
        lines.append(f"schedules {', '.join(sorted(r.schedules))} (in this process)")
    return "Ferry is running:\n  " + "\n  ".join(lines)
