from pathlib import Path

import pytest

from ferry import config


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "ferry.yaml"
    p.write_text(text)
    return p


def test_repository_ferry_yaml_loads_with_laptop_defaults() -> None:
    s = config.load(Path(__file__).parents[2] / "ferry.yaml", env={})
    assert s.server.address == "127.0.0.1:50051"
    assert s.metrics.port == 9100
    assert s.database.url.startswith("sqlite:///")
    assert [svc.name for svc in s.server.services] == [
        "export",
        "import",
        "auth",
        "notify",
        "reports",
    ]
    assert s.server.filters == ["logging", "metrics", "deadline", "auth"]


def test_environment_overrides_nested_keys_by_path() -> None:
    s = config.load(
        None,
        env={
            "FERRY_DATABASE_URL": "postgresql+psycopg://u@h/db",
            "FERRY_SERVER_MAX_WORKERS": "8",
            "FERRY_SERVER_SHUTDOWN_GRACE_SECONDS": "2.5",
            "FERRY_TARGET": "export:50051",
            "FERRY_SERVER_FILTERS": "[logging, auth]",
            "FERRY_TOKEN": "ignored-not-a-setting",
        },
    )
    assert s.database.url == "postgresql+psycopg://u@h/db"
    assert s.server.max_workers == 8
    assert s.server.shutdown.grace_seconds == 2.5
    assert s.client.target == "export:50051"
    assert s.server.filters == ["logging", "auth"]


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match=r"server\.max_wrokers: unknown key"):
        config.load(write(tmp_path, "server:\n  max_wrokers: 3\n"), env={})


def test_bad_value_names_key_and_reason(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match=r"server\.address: .*host:port"):
        config.load(write(tmp_path, "server:\n  address: nowhere\n"), env={})


def test_bad_value_from_environment_names_key() -> None:
    with pytest.raises(config.ConfigError, match=r"server\.max_workers"):
        config.load(None, env={"FERRY_SERVER_MAX_WORKERS": "many"})


def test_unknown_environment_variable_is_an_error() -> None:
    with pytest.raises(config.ConfigError, match="FERRY_DATABSE_URL does not name a setting"):
        config.load(None, env={"FERRY_DATABSE_URL": "sqlite://"})


def test_invalid_yaml_and_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="not valid YAML"):
        config.load(write(tmp_path, "server: [\n"), env={})
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.yaml", env={})
    with pytest.raises(config.ConfigError, match="top level must be a mapping"):
        config.load(write(tmp_path, "- a\n- b\n"), env={})


def test_relative_sqlite_path_resolves_against_config_folder(tmp_path: Path) -> None:
    s = config.load(write(tmp_path, "database:\n  url: sqlite:///var/x.db\n"), env={})
    assert s.database_url() == f"sqlite:///{tmp_path.resolve()}/var/x.db"


def test_client_target_per_service_falls_back_to_default() -> None:
    s = config.load(None, env={"FERRY_TARGET": "a:1"})
    assert s.client.for_service("export") == ("a:1", 30.0)


def test_mail_links_follow_the_gateways_port_unless_public_url_is_set(tmp_path: Path) -> None:
    """A gateway moved to another port (file or environment) moves the links in mails with
    it; they kept pointing at :8080 when public_url was a fixed default."""
    repo = Path(__file__).parents[2] / "ferry.yaml"
    assert config.load(repo, env={}).notify.public_url == "http://127.0.0.1:8080"
    moved = config.load(repo, env={"FERRY_GATEWAY_PORT": "9090"})
    assert moved.notify.public_url == "http://127.0.0.1:9090"
    p = write(tmp_path, "gateway:\n  address: '::1'\n  port: 8443\n")
    assert config.load(p, env={}).notify.public_url == "http://[::1]:8443"
    import socket

    p = write(tmp_path, "gateway:\n  address: 0.0.0.0\n")
    assert config.load(p, env={}).notify.public_url == f"http://{socket.gethostname()}:8080"
    p = write(tmp_path, "gateway:\n  port: 9090\nnotify:\n  public_url: https://ferry.example\n")
    assert config.load(p, env={}).notify.public_url == "https://ferry.example"
