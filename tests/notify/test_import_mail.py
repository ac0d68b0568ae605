"""ImportSession with `notify`: the summary arrives by mail; bad addresses fail before the
upload and change nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

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
