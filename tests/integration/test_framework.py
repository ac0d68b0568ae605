"""The framework's promises, through a real server: names from requests never import code,
a typo in ferry.yaml stops start-up, a service's filters add to the chain, client-stream
uploads honour their deadline, and every error has one status."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from ferry.app import App
from ferry.cli.main import cli
from ferry.v1 import export_pb2, import_pb2
from tests.conftest import auth, running
from tests.imports.helpers import Stubs, download, file_requests

PROBE = "ferry_probe_module_never_imported"


@pytest.fixture
def probe_module(tmp_path: Path) -> Iterator[str]:
    """An importable module that must never be imported: a request naming it is refused."""
    (tmp_path / f"{PROBE}.py").write_text("class Anything:\n    name = 'x'\n")
    sys.path.insert(0, str(tmp_path))
    sys.modules.pop(PROBE, None)
    try:
        yield f"{PROBE}:Anything"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(PROBE, None)


@pytest.fixture
def stubs(seeded_url: str, make_app: Callable[..., App]) -> Iterator[Stubs]:
    app = make_app(seeded_url)
    with running(app, ["export", "import"]) as srv:
        s = Stubs(app, srv.port, "admin")
        try:
            yield s
        finally:
            s.channel.close()


def _invalid(call: Callable[[], object], field: str) -> str:
    with pytest.raises(grpc.RpcError) as e:
        call()
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    details = str(e.value.details())
    assert field in details and "known:" in details
    assert PROBE not in sys.modules
    return details


def test_start_export_format_path_is_refused(stubs: Stubs, probe_module: str) -> None:
    req = export_pb2.StartExportRequest(export_type="students", format=probe_module)
    _invalid(lambda: stubs.export.StartExport(req, metadata=stubs.md, timeout=10), "format")


def test_download_session_bundle_format_path_is_refused(stubs: Stubs, probe_module: str) -> None:
    req = export_pb2.DownloadSessionRequest(semester="2026-fall", bundle_format=probe_module)
    _invalid(
        lambda: list(stubs.export.DownloadSession(req, metadata=stubs.md, timeout=10)),
        "bundle_format",
    )


def test_import_session_dataset_path_is_refused(stubs: Stubs, probe_module: str) -> None:
    reqs = file_requests(b"{}", "b.json", dataset=probe_module)
    _invalid(lambda: stubs.imports.ImportSession(reqs, metadata=stubs.md, timeout=10), "dataset")


def test_bundle_metadata_dataset_path_is_refused(stubs: Stubs, probe_module: str) -> None:
    data = download(stubs, "2026-spring")
    doc = json.loads(data)
    doc["metadata"]["dataset"] = probe_module
    payload = json.dumps(doc).encode()
    reqs = file_requests(payload, "b.json", dry_run=True)
    _invalid(
        lambda: stubs.imports.ImportSession(reqs, metadata=stubs.md, timeout=30),
        "metadata.dataset",
    )


def test_a_request_dataset_path_is_refused_in_stream_session(
    stubs: Stubs, probe_module: str
) -> None:
    req = export_pb2.StreamSessionRequest(semester="2026-fall", dataset=probe_module)
    _invalid(
        lambda: list(stubs.export.StreamSession(req, metadata=stubs.md, timeout=10)), "dataset"
    )


def test_a_typo_in_dataset_stops_serve_naming_the_known(tmp_path: Path) -> None:
    env = {
        "FERRY_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "FERRY_AUTH_SIGNING_KEY_FILE": str(tmp_path / "k"),
        "FERRY_METRICS_ENABLED": "false",
        "FERRY_GATEWAY_ENABLED": "false",
        "FERRY_SERVER_ADDRESS": "127.0.0.1:0",
        "FERRY_DATASET": "scool",
    }
    result = CliRunner().invoke(cli, ["serve", "export"], env=env)
    assert result.exit_code != 0
    text = str(result.exception) + result.output
    assert "dataset" in text and "'scool'" in text and "known: school" in text


def test_a_service_filter_list_without_auth_still_needs_a_token(
    seeded_url: str, make_app: Callable[..., App]
) -> None:
    # The service lists only logging: it is added to the server's chain, which has auth,
    # and a server chain that forgets auth gets it anyway.
    services = "[{name: export, filters: [logging]}, {name: import, filters: [logging, metrics]}]"
    for server_filters in ("[logging, metrics, deadline, auth]", "[logging, metrics]"):
        app = make_app(
            seeded_url, FERRY_SERVER_SERVICES=services, FERRY_SERVER_FILTERS=server_filters
        )
        with running(app, ["export"]) as srv, grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            from ferry.v1 import export_pb2_grpc

            stub = export_pb2_grpc.ExportServiceStub(ch)
            with pytest.raises(grpc.RpcError) as e:
                stub.ListSemesters(export_pb2.ListSemestersRequest(), timeout=10)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            ok = stub.ListSemesters(
                export_pb2.ListSemestersRequest(), metadata=auth(app, "viewer"), timeout=10
            )
            assert ok.semesters


def _received(method: str) -> float:
    from prometheus_client import REGISTRY

    labels = {
        "grpc_service": "ferry.v1.ImportService",
        "grpc_method": method,
        "grpc_type": "client_stream",
    }
    return REGISTRY.get_sample_value("ferry_rpc_server_msg_received_total", labels) or 0.0


def test_an_upload_past_its_deadline_is_deadline_exceeded_at_the_next_message(
    seeded_url: str, make_app: Callable[..., App]
) -> None:
    # The client sets no deadline; the server's configured one for ImportSession is short.
    services = "[{name: export}, {name: import, method_timeouts: {ImportSession: 0.5}}]"
    app = make_app(seeded_url, FERRY_SERVER_SERVICES=services)
    with running(app, ["export", "import"]) as srv:
        stubs = Stubs(app, srv.port, "admin")
        data = download(stubs, "2026-spring", fmt="jsonl")
        assert len(data) > 3 * 64 * 1024
        sent: list[int] = []

        def slow() -> Iterator[import_pb2.ImportSessionRequest]:
            for i, r in enumerate(file_requests(data, "b.jsonl", dry_run=True)):
                if i == 2:
                    time.sleep(0.8)
                sent.append(i)
                yield r

        before = _received("ImportSession")
        with pytest.raises(grpc.RpcError) as e:
            stubs.imports.ImportSession(slow(), metadata=stubs.md)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e.value.details()
        assert "deadline" in str(e.value.details())
        assert _received("ImportSession") - before >= 2
        stubs.channel.close()


def test_client_filters_carry_token_deadline_and_metrics(
    seeded_url: str, make_app: Callable[..., App]
) -> None:
    from prometheus_client import REGISTRY

    from ferry import plugins
    from ferry.config import ClientSettings
    from ferry.rpc.client import Clients
    from tests.conftest import token

    app = make_app(seeded_url)
    labels = {
        "grpc_service": "ferry.v1.ExportService",
        "grpc_method": "ListSemesters",
        "grpc_code": "OK",
    }
    with running(app, ["export"]) as srv:
        target = f"127.0.0.1:{srv.port}"
        before = REGISTRY.get_sample_value("ferry_rpc_client_handled_total", labels) or 0.0
        clients = Clients(ClientSettings(target=target), lambda: token(app, "viewer"))
        assert clients.export().ListSemesters(export_pb2.ListSemestersRequest()).semesters
        after = REGISTRY.get_sample_value("ferry_rpc_client_handled_total", labels) or 0.0
        assert after == before + 1
        clients.close()
        # Without the auth client filter no token travels: the server refuses the call.
        bare = Clients(
            ClientSettings(target=target, filters=["deadline"]), lambda: token(app, "viewer")
        )
        with pytest.raises(grpc.RpcError) as e:
            bare.export().ListSemesters(export_pb2.ListSemestersRequest())
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        bare.close()

    from ferry.rpc.filters import Filter, FilterPlugin

    class ServerOnly(FilterPlugin):
        server_half = Filter

    plugins.register("ferry.filters", "server-only", ServerOnly)
    try:
        with pytest.raises(plugins.PluginError, match="has no client half"):
            Clients(ClientSettings(target="127.0.0.1:1", filters=["server-only"])).channel("export")
    finally:
        plugins.unregister("ferry.filters", "server-only")


def test_connection_age_makes_clients_reconnect(
    seeded_url: str, make_app: Callable[..., App]
) -> None:
    """With server.max_connection_age_seconds the server closes a connection after that
    age (clients then resolve their target again); calls keep working across it."""
    from ferry.rpc.server import connection_age_options

    assert connection_age_options(0) == []
    app = make_app(seeded_url, FERRY_SERVER_MAX_CONNECTION_AGE_SECONDS="0.5")
    with running(app, ["export"]) as srv, grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        from ferry.v1 import export_pb2_grpc

        stub = export_pb2_grpc.ExportServiceStub(ch)
        states: list[grpc.ChannelConnectivity] = []
        ch.subscribe(states.append)
        md = auth(app, "viewer")
        assert stub.ListSemesters(export_pb2.ListSemestersRequest(), metadata=md, timeout=10)
        time.sleep(2.5)  # past the age and its grace: the server closed the connection
        assert stub.ListSemesters(export_pb2.ListSemestersRequest(), metadata=md, timeout=10)
        assert grpc.ChannelConnectivity.IDLE in states or (
            states.count(grpc.ChannelConnectivity.CONNECTING) >= 2
        ), states
