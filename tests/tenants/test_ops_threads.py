"""Every thread Ferry starts acts for the right school (docs/tenants.md): a new thread
starts with no context, so in the default school. A thread that does part of a call's
work must be started with `tenant.carried(target)`; a thread that is not part of one
school's work (platform housekeeping, or a worker that acts for each school in turn
itself) is listed here with why. A new `threading.Thread` that is neither fails."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

from ferry.db import tenant

ROOT = Path(__file__).resolve().parents[2]

# (file, target as written) -> why it needs no school of a call.
PLATFORM = {
    ("ferry/auth/revocation.py", "_refresh_loop"): "reads revoked token ids (platform)",
    ("ferry/auth/revocation.py", "self._write_uses"): "auth_tokens is a platform table",
    ("ferry/notify/worker.py", "self._loop"): "claims each school's batches acting for it",
    ("ferry/cache/breaker.py", "self._run_probe"): "pings Redis, reads no rows",
    ("ferry/plugins.py", "run"): "builds a plugin at start-up, before any call",
    ("ferry/rpc/server.py", "self._watch_database"): "SELECT 1 for the health status",
    ("ferry/rpc/server.py", "self.stop"): "stops the server",
    ("ferry/export_jobs/pool.py", "target"): "workers act for each school in turn",
    ("ferry/export_jobs/schedule.py", "self._run"): "starts each school's runs by its token",
    ("gateway/server.py", "self.server.run"): "serves HTTP; each request names its token",
    ("ferry/bundle/formats/targz.py", "self._run"): "deflates bytes handed to it, reads no rows",
    ("ferry/reports/versions.py", "self._run"): "report_listeners and LISTEN (platform); "
    "drops every school's versions alike",
}


def threads() -> list[tuple[str, int, str, bool]]:
    """(file, line, target, carried) of every threading.Thread(...) in the code."""
    found = []
    for folder in ("ferry", "services", "gateway"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and ast.unparse(node.func).endswith("Thread")):
                    continue
                target = next((k.value for k in node.keywords if k.arg == "target"), None)
                if target is None:
                    continue
                carried = isinstance(target, ast.Call) and ast.unparse(target.func).endswith(
                    "carried"
                )
                shown = ast.unparse(target.args[0] if carried else target)  # type: ignore[attr-defined]
                found.append((str(path.relative_to(ROOT)), node.lineno, shown, carried))
    return found


def test_every_thread_is_carried_or_listed_as_the_platforms() -> None:
    found = threads()
    assert len(found) >= 10  # the scan sees the threads (it is not looking elsewhere)
    loose = [
        f"{f}:{line} Thread(target={t})"
        for f, line, t, carried in found
        if not carried and (f, t) not in PLATFORM
    ]
    assert loose == [], "start these with tenant.carried(...) or list them in PLATFORM"
    stale = set(PLATFORM) - {(f, t) for f, _, t, carried in found if not carried}
    assert stale == set(), "PLATFORM lists threads that are gone"


def test_carried_runs_the_target_acting_for_the_school_that_started_it() -> None:
    seen: list[int] = []
    with tenant.acting_for(7):
        thread = threading.Thread(target=tenant.carried(lambda: seen.append(tenant.school_id())))
        loose = threading.Thread(target=lambda: seen.append(tenant.school_id()))
    thread.start()
    loose.start()
    thread.join()
    loose.join()
    assert sorted(seen) == [tenant.DEFAULT_SCHOOL_ID, 7]
