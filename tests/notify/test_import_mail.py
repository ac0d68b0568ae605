"""ImportSession with `notify`: the summary arrives by mail; bad addresses fail before the
upload and change nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from ferry.app import App
from tests.conftest import running
from tests.imports.helpers import Stubs, counts, download, import_file, seed_small
from tests.notify.conftest import FAST
from tests.notify.helpers import SmtpServer, free_port


@pytest.mark.parametrize("backend", ["sqlite"])
def test_import_summary_is_mailed(
    empty_url: str, make_app: Callable[..., App], smtp: SmtpServer, tmp_path: Path
) -> None:
    seed_small(empty_url)
    port = free_port()
    app = make_app(
        empty_url,
        **FAST,
        FERRY_SERVER_ADDRESS=f"127.0.0.1:{port}",
        FERRY_CLIENT_TARGET=f"127.0.0.1:{port}",
        FERRY_NOTIFY_CHANNELS="[smtp]",
        FERRY_NOTIFY_DEFAULT_CHANNELS="[smtp]",
        FERRY_PLUGINS_CHANNELS_SMTP_PORT=str(smtp.port),
    )
    with running(app, ["export", "import", "notify"]) as srv:
        stubs = Stubs(app, srv.port)
        try:
            data = download(stubs)
            before = counts(empty_url)
            with pytest.raises(grpc.RpcError) as e:
                import_file(stubs, data, "fall.json", notify=["not-an-address"])
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "options.notify[0]" in (e.value.details() or "")
            assert counts(empty_url) == before
            result = import_file(stubs, data, "fall.json", notify=["registrar@school.example"])
        finally:
            stubs.channel.close()
        (mail,) = smtp.inbox.wait_for(1)
    assert mail["Subject"] == "Import finished: fall.json"
    text = mail.get_body(("plain",)).get_content()
    assert f"Import: {result.id}" in text
    for s in result.summaries:
        assert (
            f"{s.entity}: {s.created} created, {s.updated} updated, {s.unchanged:,} unchanged"
            in text
        )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_announcement_commits_with_the_record_and_never_fails_the_import(
    empty_url: str, make_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No notify service runs: a dry run's announcement is in the outbox all the same
    (written with its record); an announcement that cannot be written is logged and the
    import completes."""
    from ferry.db.notify_models import Notification
    from ferry.notify import core
    from ferry.v1 import import_pb2 as ipb

    seed_small(empty_url)
    app = make_app(empty_url, **FAST, FERRY_NOTIFY_DEFAULT_CHANNELS="[log]")
    with running(app, ["export", "import"]) as srv:
        stubs = Stubs(app, srv.port)
        try:
            data = download(stubs)
            dry = import_file(stubs, data, "fall.json", notify=["a@school.example"], dry_run=True)
            assert dry.status == ipb.IMPORT_STATUS_DRY_RUN

            def broken(*args: object, **kw: object) -> None:
                raise RuntimeError("template store unreachable")

            monkeypatch.setattr(core, "announcement", broken)
            done = import_file(stubs, data, "fall.json", notify=["a@school.example"])
            assert done.status == ipb.IMPORT_STATUS_COMPLETED
        finally:
            stubs.channel.close()
    with app.engine.connect() as c:
        events = c.execute(sa.select(Notification.event_id, Notification.variables)).all()
    assert [(e, v["dry_run"]) for e, v in events] == [(f"import:{dry.id}", True)]
