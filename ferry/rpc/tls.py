"""TLS between processes: server credentials (optionally asking clients for a certificate
signed by a CA of ours) and channel credentials that verify the server's certificate and
name. Settings: `tls.server` and `tls.client` in ferry.yaml (off while empty).

A file that is missing or unreadable stops start-up with an error naming the setting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from ferry.config import ClientTlsSettings, ServerTlsSettings, Settings


class TlsError(ValueError):
    """A TLS setting that cannot be used (names the setting and the file)."""


def _read(settings: Settings, setting: str, value: str) -> bytes:
    path = settings.path(value)
    try:
        return path.read_bytes()
    except OSError as e:
        raise TlsError(f"{setting}: cannot read {path}: {e.strerror}") from None


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """Credentials for the gRPC server, or None when tls.server.cert_file is empty."""
    t: ServerTlsSettings = settings.tls.server
    if not t.cert_file:
        return None
    if not t.key_file:
        raise TlsError("tls.server.key_file is required with tls.server.cert_file")
    cert = _read(settings, "tls.server.cert_file", t.cert_file)
    key = _read(settings, "tls.server.key_file", t.key_file)
    ca = (
        _read(settings, "tls.server.client_ca_file", t.client_ca_file) if t.client_ca_file else None
    )
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


def bind(server: grpc.Server, address: str, settings: Settings) -> int:
    """Listen on `address`, with TLS when configured; the bound port (0: failed)."""
    creds = server_credentials(settings)
    if creds is None:
        return int(server.add_insecure_port(address))
    return int(server.add_secure_port(address, creds))


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """Credentials verifying the servers' certificates, or None when tls.client.ca_file
    is empty (plaintext)."""
    t: ClientTlsSettings = settings.tls.client
    if not t.ca_file:
        return None
    if bool(t.cert_file) != bool(t.key_file):
        raise TlsError("tls.client.cert_file and tls.client.key_file go together")
    ca = _read(settings, "tls.client.ca_file", t.ca_file)
    cert = _read(settings, "tls.client.cert_file", t.cert_file) if t.cert_file else None
    key = _read(settings, "tls.client.key_file", t.key_file) if t.key_file else None
    return grpc.ssl_channel_credentials(ca, key, cert)


def channel_options(
    settings: Settings, options: Sequence[tuple[str, Any]]
) -> list[tuple[str, Any]]:
    """`options`, plus the name override when tls.client.server_name is set."""
    out = list(options)
    if settings.tls.client.ca_file and settings.tls.client.server_name:
        out.append(("grpc.ssl_target_name_override", settings.tls.client.server_name))
    return out


def channel(settings: Settings, target: str, options: Sequence[tuple[str, Any]]) -> grpc.Channel:
    """A channel to `target`: TLS when tls.client.ca_file is set, else plaintext."""
    creds = channel_credentials(settings)
    opts = channel_options(settings, options)
    if creds is None:
        return grpc.insecure_channel(target, options=opts)
    return grpc.secure_channel(target, creds, options=opts)


def aio_channel(settings: Settings, target: str, options: Sequence[tuple[str, Any]]) -> Any:
    """The same for grpc.aio (the gateway)."""
    creds = channel_credentials(settings)
    opts = channel_options(settings, options)
    if creds is None:
        return grpc.aio.insecure_channel(target, options=opts)
    return grpc.aio.secure_channel(target, creds, options=opts)


__all__ = ["TlsError", "aio_channel", "bind", "channel", "server_credentials"]
