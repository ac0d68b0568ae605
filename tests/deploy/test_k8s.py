"""The Kubernetes manifests agree with the code: every FERRY_* they set is a real setting,
every pod runs a real command and service, every CronJob a real schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from ferry import config, plugins
from ferry.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "k8s" / "base"


def documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((BASE / name).read_text()) if d]
    return docs


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return list(spec["template"]["spec"]["containers"])


def env_of(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    shared = next(
        d["data"] for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "ferry-env"
    )
    env = dict(shared)
    env.update({e["name"]: e["value"] for e in container.get("env", [])})
    env["FERRY_CONFIG"] = str(ROOT / "ferry.yaml")  # the ConfigMap is this file
    env["FERRY_AUTH_SIGNING_KEY_FILE"] = "/nonexistent/signing.key"
    return env


def test_every_environment_override_names_a_real_setting() -> None:
    docs = documents()
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job", "CronJob"):
            continue
        for c in containers(doc):
            env = env_of(docs, c)
            settings = config.load(Path(env["FERRY_CONFIG"]), env)  # raises on a bad key
            assert settings.database.auto_migrate is False


def test_pods_run_real_commands_and_services() -> None:
    docs = documents()
    commands = set(cli.commands)
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job", "CronJob"):
            continue
        for c in containers(doc):
            args = c["args"]
            assert args[0] in commands, args
            if args[0] == "serve":
                assert set(args[1:]) <= set(plugins.names("ferry.services")), args
                probe = c["readinessProbe"]["grpc"]["service"]
                assert probe.startswith("ferry.v1.")


def test_cronjobs_run_schedules_declared_in_ferry_yaml() -> None:
    settings = config.load(ROOT / "ferry.yaml", {})
    for doc in documents():
        if doc["kind"] == "CronJob":
            (c,) = containers(doc)
            assert c["args"][:3] == ["export", "run", "--schedule"]
            assert c["args"][3] in settings.export.schedules


def test_client_targets_cover_every_served_service() -> None:
    docs = documents()
    env = env_of(docs, {"env": []})
    settings = config.load(Path(env["FERRY_CONFIG"]), env)
    served = {
        c["args"][1]
        for d in docs
        if d["kind"] == "Deployment"
        for c in containers(d)
        if c["args"][0] == "serve"
    }
    assert served <= {s.name for s in settings.client.services if s.target}


def test_gateway_command_exists() -> None:
    result = CliRunner().invoke(cli, ["gateway", "--help"])
    assert result.exit_code == 0 and "gateway" in result.output
