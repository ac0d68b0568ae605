"""The Kubernetes manifests, as `kubectl kustomize` renders each overlay (no special flags),
agree with the code and keep their promises: every object validates against the Kubernetes
schemas offline; every FERRY_* they set is a real setting; every pod runs a real command and
service; probes, security, grace periods, secrets, load balancing, NetworkPolicies and
CronJob policies are what docs/deploy.md says; and the generated files are current."""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from ferry import config, plugins
from ferry.cli.main import cli
from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ["dev", "production"]
GRPC = ["export", "import", "reports", "notify", "auth"]
WORKLOADS = ("Deployment", "Job", "CronJob")
KUBERNETES = "1.32.0"


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        message = "kubectl (with kustomize) is not installed"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "k8s" / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def objects(overlay: str, kind: str | None = None) -> list[dict[str, Any]]:
    return [d for d in rendered(overlay) if kind is None or d["kind"] == kind]


def named(overlay: str, kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in objects(overlay, kind) if d["metadata"]["name"] == name]
    return doc


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return dict(spec["template"]["spec"])


def pod_labels(doc: dict[str, Any]) -> dict[str, str]:
    spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    return dict(spec["template"]["metadata"].get("labels", {}))


def ferry_workloads(overlay: str) -> list[dict[str, Any]]:
    """Deployments, Jobs and CronJobs that run the ferry image."""
    return [
        d
        for d in rendered(overlay)
        if d["kind"] in WORKLOADS
        and pod_spec(d)["containers"][0]["image"].rsplit(":", 1)[0].rsplit("/", 1)[-1] == "ferry"
    ]


FERRY_WORKLOADS = [
    *[("Deployment", f"ferry-{n}") for n in [*GRPC, "gateway"]],
    ("Job", "ferry-db-upgrade"),
    ("CronJob", "ferry-export-nightly-students"),
    ("CronJob", "ferry-export-nightly-backup"),
    ("CronJob", "ferry-export-cleanup"),
]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_workloads_checked_one_by_one_are_all_of_them(overlay: str) -> None:
    found = [(d["kind"], d["metadata"]["name"]) for d in ferry_workloads(overlay)]
    assert sorted(found) == sorted(FERRY_WORKLOADS)


def pod_env(overlay: str, doc: dict[str, Any], tmp: Path) -> dict[str, str]:
    """The FERRY_* environment of the workload's first container, secrets as placeholders,
    with FERRY_CONFIG pointing at the rendered ferry-config ConfigMap's file."""
    (shared,) = [
        d["data"] for d in objects(overlay, "ConfigMap") if d["metadata"]["name"] == "ferry-env"
    ]
    c = pod_spec(doc)["containers"][0]
    env = dict(shared)
    for e in c.get("env", []):
        env[e["name"]] = e.get(
            "value",
            "postgresql+psycopg://placeholder@db/ferry"
            if e["name"] == "FERRY_DATABASE_URL"
            else "from-a-secret",
        )
    (cfg,) = [
        d for d in objects(overlay, "ConfigMap") if d["metadata"]["name"].startswith("ferry-config")
    ]
    path = tmp / "ferry.yaml"
    path.write_text(cfg["data"]["ferry.yaml"])
    env["FERRY_CONFIG"] = str(path)
    return {k: v for k, v in env.items() if k.startswith("FERRY_")}


# The base's own files, unrendered: helpers other tests in tests/deploy build on.
BASE = ROOT / "k8s" / "base"


def documents() -> list[dict[str, Any]]:
    """The objects of k8s/base's resource files, as written (not rendered)."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((BASE / name).read_text()) if d]
    return docs


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod_spec(doc)["containers"])


def env_of(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """ferry-env plus the container's literal env values (Secret references left out)."""
    (shared,) = [
        d["data"] for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "ferry-env"
    ]
    return {**shared, **{e["name"]: e["value"] for e in container.get("env", []) if "value" in e}}


# -- rendering and schemas ---------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_validates_against_the_kubernetes_schemas(overlay: str) -> None:
    docs = rendered(overlay)
    kinds = {d["kind"] for d in docs}
    assert {
        "Deployment",
        "Service",
        "CronJob",
        "Job",
        "NetworkPolicy",
        "ConfigMap",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "PersistentVolumeClaim",
    } <= kinds
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_the_validator_rejects_a_broken_object() -> None:
    doc = named("dev", "Deployment", "ferry-export")
    broken = {**doc, "spec": {**doc["spec"], "replicas": "three"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)
    typo = {**doc, "spec": {**doc["spec"], "replica": 3}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES, strict=True)


def test_every_service_and_the_gateway_has_a_deployment() -> None:
    for overlay in OVERLAYS:
        names = {d["metadata"]["name"] for d in objects(overlay, "Deployment")}
        assert {f"ferry-{n}" for n in [*GRPC, "gateway"]} <= names


# -- the config and the code -------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize(("kind", "name"), FERRY_WORKLOADS)
def test_every_environment_override_names_a_real_setting(
    overlay: str, kind: str, name: str, tmp_path: Path
) -> None:
    doc = named(overlay, kind, name)
    env = pod_env(overlay, doc, tmp_path)
    settings = config.load(Path(env["FERRY_CONFIG"]), env)  # raises naming a bad key
    assert settings.database.auto_migrate is False
    assert settings.export.scheduler.enabled is False  # CronJobs run the schedules
    assert settings.client.load_balancing_policy == "round_robin"
    spec = pod_spec(doc)
    if doc["kind"] == "Deployment":
        shutdown = settings.server.shutdown
        assert spec["terminationGracePeriodSeconds"] > (
            shutdown.deregister_wait_seconds + shutdown.grace_seconds
        )


@pytest.mark.parametrize("service", GRPC)
def test_every_pod_runs_a_real_service(service: str) -> None:
    """Compares with the installed `ferry.services` plugins: reports, notify and auth pass
    once their services are registered."""
    doc = named("production", "Deployment", f"ferry-{service}")
    (c,) = pod_spec(doc)["containers"]
    assert c["args"] == ["serve", service]
    assert service in plugins.names("ferry.services"), plugins.names("ferry.services")
    full_name = plugins.load("ferry.services", service).full_name
    assert c["readinessProbe"]["grpc"]["service"] == full_name


def test_every_command_a_manifest_runs_exists_in_the_cli() -> None:
    runner = CliRunner()
    for overlay in OVERLAYS:
        for doc in ferry_workloads(overlay):
            args = pod_spec(doc)["containers"][0]["args"]
            words = [a for a in args if not a.startswith("-")]
            words = words[:2] if words[0] in ("export", "db") else words[:1]
            result = runner.invoke(cli, [*words, "--help"])
            assert result.exit_code == 0, (args, result.output)


# -- probes, security, resources ---------------------------------------------------------


@pytest.mark.parametrize("service", GRPC)
def test_grpc_services_have_native_grpc_probes_on_the_health_service(service: str) -> None:
    (c,) = pod_spec(named("production", "Deployment", f"ferry-{service}"))["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"]["port"] == 50051, probe
    assert c["readinessProbe"]["grpc"]["service"].startswith("ferry.v1.")
    assert c["livenessProbe"]["grpc"].get("service", "") == ""  # the whole process


def test_the_gateway_has_http_probes() -> None:
    (c,) = pod_spec(named("production", "Deployment", "ferry-gateway"))["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"


def dockerfile_uid() -> int:
    (user,) = re.findall(r"^USER (\d+):\d+$", (ROOT / "Dockerfile").read_text(), re.M)
    return int(user)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_restricted(overlay: str) -> None:
    for doc in objects(overlay):
        if doc["kind"] not in WORKLOADS:
            continue
        spec = pod_spec(doc)
        where = doc["metadata"]["name"]
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec.get("automountServiceAccountToken") is False, where
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), where
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), where
        if doc in ferry_workloads(overlay):
            assert pod["runAsUser"] == dockerfile_uid(), where
            volumes = {v["name"]: v for v in spec["volumes"]}
            (tmp,) = [m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert "emptyDir" in volumes[tmp["name"]], where


# -- secrets ------------------------------------------------------------------------------


def secret_refs(doc: dict[str, Any]) -> dict[str, str]:
    """env name -> Secret name, for the first container."""
    c = pod_spec(doc)["containers"][0]
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def secret_volumes(doc: dict[str, Any]) -> set[str]:
    return {v["secret"]["secretName"] for v in pod_spec(doc).get("volumes", []) if "secret" in v}


def test_secrets_are_referenced_never_committed() -> None:
    assert objects("production", "Secret") == []
    for path in (ROOT / "k8s").rglob("*.yaml"):
        if "overlays/dev" in str(path):
            continue  # the dev overlay's throwaway in-cluster database password
        text = path.read_text()
        assert not re.search(r"postgresql(\+psycopg)?://[^@\s]*:[^@\s]+@", text), path
        assert "kind: Secret" not in text, path
    for overlay in OVERLAYS:
        for doc in ferry_workloads(overlay):
            env = {e["name"]: e for e in pod_spec(doc)["containers"][0].get("env", [])}
            for name in (
                "FERRY_DATABASE_URL",
                "FERRY_DATABASE_PLATFORM_URL",
                "FERRY_REDIS_URL",
                "FERRY_TOKEN",
            ):
                if name in env:
                    assert "secretKeyRef" in env[name]["valueFrom"], (doc["metadata"], name)


def test_only_auth_holds_the_private_key_and_the_gateway_holds_nothing_secret() -> None:
    for doc in ferry_workloads("production"):
        name = doc["metadata"]["name"]
        has_key = "ferry-signing-key" in secret_volumes(doc)
        assert has_key == (name == "ferry-auth"), name
    gateway = named("production", "Deployment", "ferry-gateway")
    assert secret_refs(gateway) == {} and secret_volumes(gateway) == set()
    refs = {s: secret_refs(named("production", "Deployment", f"ferry-{s}")) for s in GRPC}
    for s in GRPC:
        assert refs[s]["FERRY_DATABASE_URL"] == "ferry-database"
    for s in ("reports", "notify", "auth"):
        assert refs[s]["FERRY_REDIS_URL"] == "ferry-redis"
    notify = named("production", "Deployment", "ferry-notify")
    assert secret_volumes(notify) == {"ferry-smtp", "ferry-postgres-ca"}
    env = {e["name"]: e.get("value") for e in pod_spec(notify)["containers"][0]["env"]}
    assert env["FERRY_PLUGINS_CHANNELS_SMTP_PASSWORD_FILE"] == "/var/run/ferry/smtp/password"
    settings = config.load(ROOT / "ferry.yaml", {})
    every_school = {
        f"ferry-export-{n}" for n, s in settings.export.schedules.items() if s.schools == "all"
    }
    assert every_school  # the backup of every school is a CronJob
    for cron in objects("production", "CronJob"):
        name = cron["metadata"]["name"]
        kind = settings.export.schedules.get(name.removeprefix("ferry-export-"))
        if name in every_school and kind is not None and kind.kind == "export":
            # Each school's job through its token; the schools read as the app role.
            assert secret_refs(cron) == {
                "FERRY_TOKEN": "ferry-cron-token",
                "FERRY_DATABASE_URL": "ferry-database",
            }
        elif name in every_school:  # platform work: the platform role's Secret, no token
            assert secret_refs(cron) == {"FERRY_DATABASE_PLATFORM_URL": "ferry-database-platform"}
        elif name == "ferry-export-cleanup":  # school by school on the app role
            assert secret_refs(cron) == {"FERRY_DATABASE_URL": "ferry-database"}
        else:
            assert secret_refs(cron) == {"FERRY_TOKEN": "ferry-cron-token"}, name
            assert secret_volumes(cron) == set()
    # The platform role's Secret: the migration Job and the backup of every school only.
    holders = {
        (d["kind"], d["metadata"]["name"])
        for overlay in ("dev", "production")
        for d in ferry_workloads(overlay)
        if "ferry-database-platform" in secret_refs(d).values()
    }
    backups = {
        n
        for n in every_school
        if settings.export.schedules[n.removeprefix("ferry-export-")].kind == "backup"
    }
    assert holders == {("Job", "ferry-db-upgrade")} | {("CronJob", n) for n in backups}


def test_production_takes_tls_certificates_from_secrets() -> None:
    (ingress,) = objects("production", "Ingress")
    assert ingress["spec"]["tls"][0]["secretName"] == "ferry-gateway-tls"
    for s in GRPC:
        doc = named("production", "Deployment", f"ferry-{s}")
        assert "ferry-postgres-ca" in secret_volumes(doc)
        env = {e["name"]: e.get("value") for e in pod_spec(doc)["containers"][0]["env"]}
        assert env["PGSSLROOTCERT"].startswith("/var/run/ferry/postgres-ca/")
    assert "ferry-postgres-ca" in secret_volumes(named("production", "Job", "ferry-db-upgrade"))
    for cron in objects("production", "CronJob"):  # those that open the database
        opens = any(
            e["name"].startswith("FERRY_DATABASE") for e in pod_spec(cron)["containers"][0]["env"]
        )
        assert ("ferry-postgres-ca" in secret_volumes(cron)) == opens, cron["metadata"]["name"]


# -- load balancing, availability, storage -----------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grpc_services_are_headless_and_clients_balance_each_call(
    overlay: str, tmp_path: Path
) -> None:
    env = pod_env(overlay, named(overlay, "Deployment", "ferry-gateway"), tmp_path)
    settings = config.load(Path(env["FERRY_CONFIG"]), env)
    targets = {s.name: s.target for s in settings.client.services}
    for s in GRPC:
        svc = named(overlay, "Service", f"ferry-{s}")
        assert svc["spec"]["clusterIP"] == "None"
        (grpc_port,) = [p for p in svc["spec"]["ports"] if p["name"] == "grpc"]
        assert targets[s] == f"dns:///ferry-{s}:{grpc_port['port']}"
    assert named(overlay, "Service", "ferry-gateway")["spec"].get("clusterIP") != "None"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_autoscalers_and_shared_export_storage(overlay: str) -> None:
    budgets = {
        d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for d in objects(overlay, "PodDisruptionBudget")
    }
    assert {f"ferry-{n}" for n in [*GRPC, "gateway"]} <= budgets
    scaled = {
        d["spec"]["scaleTargetRef"]["name"] for d in objects(overlay, "HorizontalPodAutoscaler")
    }
    assert scaled == {"ferry-gateway", "ferry-reports"}
    pvcs = {d["metadata"]["name"]: d for d in objects(overlay, "PersistentVolumeClaim")}
    assert set(pvcs) == {"ferry-exports", "ferry-backups"}
    pvc = pvcs["ferry-exports"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    export = pod_spec(named(overlay, "Deployment", "ferry-export"))
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in export["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {pvc["metadata"]["name"]}


def test_dev_runs_one_replica_each_with_in_cluster_databases() -> None:
    deployments = {d["metadata"]["name"]: d for d in objects("dev", "Deployment")}
    assert {"ferry-postgres", "ferry-redis"} <= set(deployments)
    assert {d["spec"]["replicas"] for d in deployments.values()} == {1}
    prod = {d["metadata"]["name"]: d["spec"] for d in objects("production", "Deployment")}
    assert prod["ferry-export"]["replicas"] > 1 and "ferry-postgres" not in prod
    # The autoscaled ones have no count that an apply would reset.
    assert "replicas" not in prod["ferry-gateway"] and "replicas" not in prod["ferry-reports"]
    hpa = {
        d["metadata"]["name"]: d["spec"] for d in objects("production", "HorizontalPodAutoscaler")
    }
    assert hpa["ferry-gateway"]["minReplicas"] > 1


# -- network policies ---------------------------------------------------------------------


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def allowed(overlay: str, target: str, port: int, source: dict[str, str] | None) -> bool:
    """Whether a pod labelled `source` (None: outside the cluster) may open `port` on the
    Deployment `target`, by the rendered NetworkPolicies (ingress only)."""
    labels = pod_labels(named(overlay, "Deployment", target))
    policies = [
        p for p in objects(overlay, "NetworkPolicy") if _matches(p["spec"]["podSelector"], labels)
    ]
    if not policies:
        return True
    for p in policies:
        for rule in p["spec"].get("ingress", []):
            if "ports" in rule and port not in [x["port"] for x in rule["ports"]]:
                continue
            if "from" not in rule:
                return True
            for peer in rule["from"]:
                if source is not None and _matches(peer.get("podSelector", {}), source):
                    return True
    return False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_gateway_takes_outside_traffic_and_metrics_only_go_to_prometheus(
    overlay: str,
) -> None:
    gateway = pod_labels(named(overlay, "Deployment", "ferry-gateway"))
    cron = pod_labels(objects(overlay, "CronJob")[0])
    prometheus = {"app.kubernetes.io/name": "prometheus"}
    stranger = {"app": "something-else"}
    assert allowed(overlay, "ferry-gateway", 8080, None)
    for s in GRPC:
        target = f"ferry-{s}"
        peer = pod_labels(named(overlay, "Deployment", f"ferry-{GRPC[(GRPC.index(s) + 1) % 5]}"))
        assert not allowed(overlay, target, 50051, None), target
        assert not allowed(overlay, target, 50051, stranger), target
        assert allowed(overlay, target, 50051, gateway), target
        assert allowed(overlay, target, 50051, cron), target
        assert allowed(overlay, target, 50051, peer), target
        assert allowed(overlay, target, 9100, prometheus), target
        assert not allowed(overlay, target, 9100, gateway), target
        assert not allowed(overlay, target, 50051, prometheus), target


# -- CronJobs and generated files ---------------------------------------------------------


def test_cronjobs_follow_the_schedules_with_safe_policies() -> None:
    settings = config.load(ROOT / "ferry.yaml", {})
    crons = {d["metadata"]["name"]: d for d in objects("production", "CronJob")}
    claims = objects("production", "PersistentVolumeClaim")
    assert any(s.kind == "backup" and s.cron for s in settings.export.schedules.values())
    wanted = {f"ferry-export-{n}": s for n, s in settings.export.schedules.items() if s.cron}
    assert set(crons) == {*wanted, "ferry-export-cleanup"}
    for name, doc in crons.items():
        spec = doc["spec"]
        job = spec["jobTemplate"]["spec"]
        assert spec["concurrencyPolicy"] == "Forbid"
        assert (
            spec["startingDeadlineSeconds"] == settings.export.scheduler.starting_deadline_seconds
        )
        assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
        assert job["backoffLimit"] >= 1 and job["activeDeadlineSeconds"] > 0
        assert pod_spec(doc)["restartPolicy"] == "Never"
        args = pod_spec(doc)["containers"][0]["args"]
        if name in wanted:
            sched = wanted[name]
            assert spec["schedule"] == sched.cron and spec["timeZone"] == sched.time_zone
            run = ["export", "run", "--schedule", name.removeprefix("ferry-export-")]
            assert job["activeDeadlineSeconds"] == sched.active_deadline_seconds
            if sched.kind == "export":
                assert args == run
                continue
            # A backup is written onto the ferry-backups volume, which the overlay has.
            assert args == [*run, "--directory", "/var/lib/ferry/backups"]
            mounts = pod_spec(doc)["containers"][0]["volumeMounts"]
            assert {"name": "backups", "mountPath": "/var/lib/ferry/backups"} in mounts
            volumes = {v["name"]: v for v in pod_spec(doc)["volumes"]}
            assert volumes["backups"]["persistentVolumeClaim"]["claimName"] == "ferry-backups"
            assert "ferry-backups" in {c["metadata"]["name"] for c in claims}
        else:
            assert args[:2] == ["export", "cleanup"]
            assert spec["schedule"] == settings.export.cleanup.cron


@pytest.mark.parametrize(
    ("command", "path"),
    [("render", "k8s/base/config/ferry.yaml"), ("cronjobs", "k8s/base/cronjobs.yaml")],
)
def test_generated_files_match_ferry_yaml(command: str, path: str) -> None:
    result = CliRunner().invoke(
        cli,
        ["--config", str(ROOT / "ferry.yaml"), "k8s", command, "--check", "-o", str(ROOT / path)],
        env={"FERRY_DATABASE_URL": "sqlite:///elsewhere.db"},  # the shell's env must not leak in
    )
    assert result.exit_code == 0, f"{result.output} (run `make k8s` and commit)"


def test_a_changed_ferry_yaml_is_caught_and_rewritten(tmp_path: Path) -> None:
    changed = tmp_path / "ferry.yaml"
    changed.write_text(
        (ROOT / "ferry.yaml").read_text().replace('cron: "30 2 * * *"', 'cron: "45 1 * * *"')
    )
    out = tmp_path / "cronjobs.yaml"
    shutil.copy(ROOT / "k8s" / "base" / "cronjobs.yaml", out)
    args = ["--config", str(changed), "k8s", "cronjobs", "-o", str(out)]
    stale = CliRunner().invoke(cli, [*args, "--check"])
    assert stale.exit_code == 1 and "out of date" in stale.output
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert "schedule: 45 1 * * *" in out.read_text()
    assert CliRunner().invoke(cli, [*args, "--check"]).exit_code == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("export:\n  schedules:\n    x: {type: students, cron: '0 */2 * * *'}\n")
    refused = CliRunner().invoke(
        cli, ["--config", str(bad), "k8s", "render", "-o", str(tmp_path / "r.yaml")]
    )
    assert refused.exit_code == 1 and "fires more than once a day" in refused.output
    assert not (tmp_path / "r.yaml").exists()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_ferry_pod_is_found_by_prometheus_pod_discovery(overlay: str) -> None:
    """k8s/prometheus/prometheus.yml keeps pods labelled part-of=ferry and annotated
    prometheus.io/scrape, and scrapes the annotated port: each Deployment's pods carry
    both, on a port the container really opens."""
    for doc in objects(overlay, "Deployment"):
        if not doc["metadata"]["name"].startswith(tuple(f"ferry-{n}" for n in [*GRPC, "gateway"])):
            continue
        template = doc["spec"]["template"]["metadata"]
        assert template["labels"]["app.kubernetes.io/part-of"] == "ferry"
        notes = template["annotations"]
        assert notes["prometheus.io/scrape"] == "true" and notes["prometheus.io/path"] == "/metrics"
        ports = {p["containerPort"] for p in pod_spec(doc)["containers"][0]["ports"]}
        assert int(notes["prometheus.io/port"]) in ports, doc["metadata"]["name"]
