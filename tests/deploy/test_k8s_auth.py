"""The manifests keep secrets where they belong (issue 11): only the auth Deployment mounts
the private signing key; the gateway gets no database URL and no private key; the CronJob
calls with a token from a Secret instead of signing one itself.

The rules are read from the manifests themselves: the private key's Secret is the one the
auth Deployment mounts where FERRY_AUTH_SIGNING_KEY_FILE points, and the database's are the
Secrets the migration Job takes its environment from. Until k8s/ has an auth Deployment
(`ferry serve auth`) there is nothing to check against, and the test says so.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import pytest

from tests.deploy.test_k8s import containers, documents, env_of

WORKLOADS = ("Deployment", "Job", "CronJob")


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return dict(spec["template"]["spec"])


def secret_mounts(doc: dict[str, Any], c: dict[str, Any]) -> dict[str, str]:
    """mountPath -> Secret name of the Secret volumes container `c` mounts."""
    volumes = {v["name"]: v["secret"]["secretName"] for v in pod_spec(doc).get("volumes", [])
               if "secret" in v}  # fmt: skip
    return {m["mountPath"]: volumes[m["name"]] for m in c.get("volumeMounts", [])
            if m["name"] in volumes}  # fmt: skip


def env_secrets(c: dict[str, Any]) -> set[str]:
    """Secrets container `c` reads environment variables from."""
    names = {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            names.add(ref["name"])
    return names


def test_only_the_auth_service_holds_the_private_key_and_the_gateway_no_database() -> None:
    docs = documents()
    workloads = [(d, c) for d in docs if d["kind"] in WORKLOADS for c in containers(d)]
    auth = [(d, c) for d, c in workloads if c["args"][:2] == ["serve", "auth"]]
    if not auth:
        pytest.skip("k8s/ has no auth Deployment (`ferry serve auth`) yet")
    (auth_doc, auth_c), *_ = auth
    key_dir = str(PurePosixPath(_signing_key_file(docs, auth_c)).parent)
    mounts = secret_mounts(auth_doc, auth_c)
    assert key_dir in mounts, f"the auth Deployment mounts no Secret at {key_dir}"
    private_secret = mounts[key_dir]
    db_secrets = {s for d, c in workloads if c["args"][:2] == ["db", "upgrade"]
                  for s in env_secrets(c)}  # fmt: skip
    for doc, c in workloads:
        if (doc, c) in auth:
            continue
        where = f"{doc['kind']} {doc['metadata']['name']}"
        assert private_secret not in secret_mounts(doc, c).values(), f"{where} mounts the key"
        assert private_secret not in env_secrets(c), f"{where} reads the private key Secret"
        if c["args"][0] == "gateway":
            assert "FERRY_DATABASE_URL" not in env_of(docs, c), f"{where} has a database URL"
            assert not env_secrets(c) & db_secrets, f"{where} reads the database Secret"
        direct = {e["name"] for e in c.get("env", [])} & {
            "FERRY_DATABASE_URL",
            "FERRY_DATABASE_PLATFORM_URL",
        }
        if doc["kind"] == "CronJob" and not direct:  # direct: on the database, no RPC
            tokens = [e for e in c.get("env", []) if e["name"] == "FERRY_TOKEN"]
            assert tokens and "secretKeyRef" in tokens[0].get("valueFrom", {}), (
                f"{where} needs FERRY_TOKEN from a Secret (an operator token)"
            )


def _signing_key_file(docs: list[dict[str, Any]], c: dict[str, Any]) -> str:
    shared = next(d["data"] for d in docs
                  if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "ferry-env")  # fmt: skip
    values = {**shared, **{e["name"]: e["value"] for e in c.get("env", []) if "value" in e}}
    return str(values.get("FERRY_AUTH_SIGNING_KEY_FILE", "var/auth/signing-key.pem"))
