"""deploy/: every YAML parses; docker-compose.yml validates against the Compose
Specification's schema, the Kubernetes manifests against Kubernetes' own schemas and the
KEDA ScaledObjects against models generated from KEDA's CRD; and the files agree with
each other and with tilecast (Redis roles, queues, probe paths).

Schemas, all offline: the compose-spec schema vendored by check-jsonschema; Kubernetes'
JSON schemas per release bundled by kubernetes-validate (strict: unknown fields fail);
cloudcoil-models-keda's pydantic models, generated from KEDA's ScaledObject CRD.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

from tests import deployfiles
from tests.deployfiles import (
    COMPOSE,
    DEPLOY,
    KUBERNETES,
    compose,
    compose_interpolated,
    deploy_files,
    kubernetes_env,
    kubernetes_resources,
    kustomization,
    kustomize_build,
    pod_specs,
    settings_from,
    tilecast_containers,
    yaml_documents,
)
from tilecast.common.settings import Settings
from tilecast.common.taskprotocol import QUEUES

KEDA_KIND = ("keda.sh/v1alpha1", "ScaledObject")
# KEDA's redis (lists) scaler's metadata keys (keda.sh/docs/scalers/redis-lists); the
# CRD types trigger metadata as a free map of strings, so its schema cannot check them.
REDIS_SCALER_KEYS = {
    "address", "host", "port", "addressFromEnv", "hostFromEnv", "portFromEnv",
    "usernameFromEnv", "passwordFromEnv", "listName", "listLength", "activationListLength",
    "enableTLS", "unsafeSsl", "databaseIndex",
}  # fmt: skip
TILECAST_SERVICES = ("api", "worker-interactive", "worker-bulk")


def schema_errors(validator: jsonschema.protocols.Validator, doc: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(doc)
    ]


def compose_schema_validator() -> jsonschema.protocols.Validator:
    from check_jsonschema.builtin_schemas import get_builtin_schema

    schema = get_builtin_schema("vendor.compose-spec")
    return jsonschema.validators.validator_for(schema)(schema)  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", deploy_files(".yml", ".yaml"), ids=lambda p: p.name)
def test_every_yaml_file_parses_into_mappings(path: Path) -> None:
    docs = yaml_documents(path)
    assert docs, f"{path} holds no document"
    assert all(isinstance(doc, dict) for doc in docs)


# --- docker-compose.yml ----------------------------------------------------------------


def test_compose_file_validates_against_the_compose_specification() -> None:
    assert schema_errors(compose_schema_validator(), compose()) == []


def test_the_compose_schema_check_catches_mistakes() -> None:
    validator = compose_schema_validator()
    broken = compose()
    broken["services"]["api"]["helthcheck"] = {"test": ["CMD", "true"]}
    broken["services"]["worker-bulk"]["command"] = ["worker", "--concurrency", 2]
    errors = schema_errors(validator, broken)
    assert any("'helthcheck' was unexpected" in e for e in errors)
    assert any(e.startswith("services/worker-bulk/command:") for e in errors)


def tilecast_settings(service: str) -> Settings:
    return settings_from(compose()["services"][service]["environment"])


def host_of(url: str) -> str:
    return urlsplit(url).hostname or ""


def volume_target(short_syntax: str) -> str:
    """The container path of a ``SOURCE:TARGET[:MODE]`` volume, its source may be
    ``${VAR:-default}``."""
    return re.sub(r"\$\{[^}]*\}", "source", short_syntax).split(":")[1]


def test_compose_redis_roles_lru_cache_and_persistent_state() -> None:
    services = compose()["services"]
    cache = services["redis-cache"]["command"]
    assert cache[cache.index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert "--maxmemory" in cache
    state = services["redis-state"]["command"]
    assert state[state.index("--appendonly") + 1] == "yes"
    assert state[state.index("--maxmemory-policy") + 1] == "noeviction"
    assert "/data" in map(volume_target, services["redis-state"]["volumes"])
    for name in TILECAST_SERVICES:
        settings = tilecast_settings(name)
        assert host_of(settings.cache_url) == "redis-cache"
        assert host_of(settings.state_url) == "redis-state"
        assert host_of(settings.broker_url) == "redis-state"
        assert {"redis-cache", "redis-state"} <= set(services[name]["depends_on"])


def test_compose_flower_watches_the_broker() -> None:
    flower = compose()["services"]["flower"]
    assert flower["command"][0] == "celery" and "flower" in flower["command"]
    assert f"--broker={tilecast_settings('api').broker_url}" in flower["command"]


def test_compose_mounts_the_images_where_the_source_roots_are() -> None:
    services = compose()["services"]
    for name in TILECAST_SERVICES:
        (root,) = tilecast_settings(name).source_roots
        assert root in map(volume_target, services[name]["volumes"]), name


def test_compose_builds_the_image_from_deploy_dockerfile() -> None:
    for name in TILECAST_SERVICES:
        build = compose()["services"][name]["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert (context / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
        assert (context / "pyproject.toml").is_file()


def test_compose_healthcheck_asks_a_real_route(settings: Settings) -> None:
    test = " ".join(compose()["services"]["api"]["healthcheck"]["test"])
    assert "/readyz" in test
    assert "/readyz" in api_routes(settings)


def compose_reference_problems(resolved: dict[str, Any]) -> list[str]:
    """What ``docker compose config`` refuses beyond the schema: a service depending on
    one that is not there, a named volume or a network not declared, a build context,
    Dockerfile or env_file that does not exist."""
    problems = []
    services = resolved["services"]
    volumes = set(resolved.get("volumes") or {})
    networks = set(resolved.get("networks") or {}) | {"default"}
    for name, service in services.items():
        for other in service.get("depends_on", []):
            if other not in services or other == name:
                problems.append(f"{name}: depends_on {other}")
        for volume in service.get("volumes", []):
            if isinstance(volume, str):
                parts = volume.split(":")
                source = parts[0] if len(parts) > 1 else ""
            else:
                source = volume.get("source", "") if volume.get("type") == "volume" else ""
            if source and not source.startswith(("/", ".", "~")) and source not in volumes:
                problems.append(f"{name}: volume {source} is not declared")
        for network in service.get("networks", []):
            if network not in networks:
                problems.append(f"{name}: network {network} is not declared")
        if "build" in service:
            context = COMPOSE.parent / service["build"]["context"]
            dockerfile = context / service["build"].get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                problems.append(f"{name}: no {dockerfile}")
        env_files = service.get("env_file", [])
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            if not (COMPOSE.parent / env_file).is_file():
                problems.append(f"{name}: no env_file {env_file}")
    return problems


@pytest.mark.parametrize("env", [{}, {"IMAGES_DIR": "/srv/slides"}], ids=["defaults", "set"])
def test_compose_file_resolves_as_docker_compose_config_would(env: dict[str, str]) -> None:
    """``docker compose config``'s checks, done here (no Docker on a clean machine): the
    variables interpolate, the result still validates, and every reference resolves."""
    resolved = compose_interpolated(env)
    assert schema_errors(compose_schema_validator(), resolved) == []
    assert compose_reference_problems(resolved) == []
    expected = env.get("IMAGES_DIR", "images")
    for name in TILECAST_SERVICES:
        assert f"{expected}:/images:ro" in resolved["services"][name]["volumes"], name


def test_the_compose_reference_check_catches_mistakes() -> None:
    broken = compose_interpolated({})
    broken["services"]["api"]["depends_on"] = {"redis-cahe": {"condition": "service_healthy"}}
    broken["services"]["worker-bulk"]["volumes"] = ["slides:/images:ro"]
    problems = compose_reference_problems(broken)
    assert problems == ["api: depends_on redis-cahe", "worker-bulk: volume slides is not declared"]
    with pytest.raises(ValueError, match="not a Compose variable"):
        compose_interpolated({}, {"services": {"api": {"image": "tilecast:$"}}})
    with pytest.raises(ValueError, match="IMAGES_DIR is required"):
        compose_interpolated({}, {"volumes": ["${IMAGES_DIR:?where the slides are}:/images"]})
    assert compose_interpolated({"A": ""}, ["${A:-x}", "${A-x}", "$$A", "${B:+y}"]) == [
        "x", "", "$A", ""
    ]  # fmt: skip


# --- Kubernetes ------------------------------------------------------------------------


def api_routes(settings: Settings) -> set[str]:
    from tilecast.api.app import create_app

    return {rule.rule for rule in create_app(settings).url_map.iter_rules()}


def core_resources() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, r) for p, r in kubernetes_resources() if (r["apiVersion"], r["kind"]) != KEDA_KIND]


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for _, r in kubernetes_resources() if r["kind"] == kind}


def kubernetes_versions() -> list[str]:
    from kubernetes_validate.utils import all_versions

    versions = all_versions()
    return [versions[0], versions[-1]]  # the oldest and the newest bundled


def test_kustomization_lists_every_manifest() -> None:
    listed = set(kustomization()["resources"])
    present = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


@pytest.mark.parametrize("version", kubernetes_versions())
def test_kubernetes_manifests_validate_against_kubernetes_schemas(version: str) -> None:
    import kubernetes_validate

    problems = []
    for path, resource in core_resources():
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            where = ".".join(map(str, err.path))
            problems.append(f"{path.name} {resource['kind']}: {where}: {err.message}")
    assert problems == []


def test_the_kubernetes_schema_check_catches_mistakes() -> None:
    import kubernetes_validate

    deployment = dict(by_kind("Deployment")["tilecast-api"])
    deployment["spec"] = {**deployment["spec"], "replica": 2}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_versions()[-1], strict=True)


def test_kustomize_builds_the_manifests() -> None:
    """``kubectl kustomize``'s output, built here (no kubectl on a clean machine): every
    resource in the namespace, labelled, the tilecast image tagged, and valid."""
    import kubernetes_validate

    spec = kustomization()
    built = kustomize_build()
    assert len(built) == len(kubernetes_resources())
    namespaces = [r["metadata"]["name"] for r in built if r["kind"] == "Namespace"]
    assert namespaces == [spec["namespace"]]
    (tag,) = [rule["newTag"] for rule in spec["images"] if rule["name"] == "tilecast"]
    tilecast_images = 0
    for resource in built:
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == spec["namespace"]
        assert resource["metadata"]["labels"]["app.kubernetes.io/part-of"] == "tilecast"
        for pod in pod_specs(resource):
            for container in pod["containers"]:
                if container["image"].split(":")[0] == "tilecast":
                    assert container["image"] == f"tilecast:{tag}"
                    tilecast_images += 1
        if (resource["apiVersion"], resource["kind"]) != KEDA_KIND:
            kubernetes_validate.validate(resource, kubernetes_versions()[-1], strict=True)
    assert tilecast_images == len(tilecast_containers())


def test_the_kustomize_build_refuses_fields_it_does_not_apply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    patched = {**kustomization(), "patches": [{"path": "api-patch.yaml"}]}
    monkeypatch.setattr(deployfiles, "kustomization", lambda: patched)
    with pytest.raises(ValueError, match="patches"):
        kustomize_build()


def test_every_container_has_resource_requests_and_limits() -> None:
    for _, resource in kubernetes_resources():
        for spec in pod_specs(resource):
            for container in spec["containers"]:
                assert {"cpu", "memory"} <= set(container["resources"]["requests"])
                assert {"cpu", "memory"} <= set(container["resources"]["limits"])


def test_api_probes_ask_real_routes(settings: Settings) -> None:
    (container,) = by_kind("Deployment")["tilecast-api"]["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"/readyz", "/healthz"} <= api_routes(settings)


def test_api_autoscales_on_cpu() -> None:
    (hpa,) = by_kind("HorizontalPodAutoscaler").values()
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "tilecast-api")
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]


def kubernetes_settings() -> Settings:
    return settings_from(kubernetes_env())


def test_kubernetes_containers_read_the_config_and_mount_the_images() -> None:
    settings = kubernetes_settings()
    (root,) = settings.source_roots
    assert host_of(settings.cache_url) in by_kind("Service")
    assert host_of(settings.state_url) in by_kind("Service")
    for name, container in tilecast_containers():
        refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
        assert refs == {"tilecast"}, name
        assert root in {m["mountPath"] for m in container["volumeMounts"]}, name


def test_kubernetes_redis_roles() -> None:
    cache = by_kind("Deployment")["redis-cache"]["spec"]["template"]["spec"]["containers"][0]
    assert cache["args"][cache["args"].index("--maxmemory-policy") + 1] == "allkeys-lru"
    state = by_kind("StatefulSet")["redis-state"]
    args = state["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert state["spec"]["volumeClaimTemplates"]


# --- KEDA ------------------------------------------------------------------------------


def scaled_objects() -> list[dict[str, Any]]:
    return [r for _, r in kubernetes_resources() if (r["apiVersion"], r["kind"]) == KEDA_KIND]


def test_scaled_objects_match_the_keda_crd() -> None:
    """The models reject wrong types and missing required fields; extra fields they
    drop silently, so a round trip that loses a key exposes a misspelt one."""
    from cloudcoil.models.keda.v1alpha1 import ScaledObject

    assert len(scaled_objects()) == 2
    for resource in scaled_objects():
        model = ScaledObject.model_validate(resource)
        again = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
        assert again == resource


def test_the_keda_check_catches_mistakes() -> None:
    from cloudcoil.models.keda.v1alpha1 import ScaledObject

    resource = scaled_objects()[0]
    misspelt = {**resource, "spec": {**resource["spec"], "minReplicas": 1}}
    model = ScaledObject.model_validate(misspelt)
    assert model.model_dump(by_alias=True, exclude_unset=True, mode="json") != misspelt
    with pytest.raises(ValueError):
        ScaledObject.model_validate({**resource, "spec": {**resource["spec"], "triggers": "x"}})


def test_workers_scale_on_their_broker_queues() -> None:
    settings = kubernetes_settings()
    broker = urlsplit(settings.broker_url)
    namespace = kustomization()["namespace"]
    deployments = by_kind("Deployment")
    queues = set()
    for scaled in scaled_objects():
        spec = scaled["spec"]
        target = deployments[spec["scaleTargetRef"]["name"]]
        (container,) = target["spec"]["template"]["spec"]["containers"]
        worker_queues = container["args"][container["args"].index("--queues") + 1]
        # Both pools keep one pod: interactive for people waiting, bulk for the job driver.
        assert spec["minReplicaCount"] >= 1
        (redis_trigger,) = [t for t in spec["triggers"] if t["type"] == "redis"]
        meta = redis_trigger["metadata"]
        assert set(meta) <= REDIS_SCALER_KEYS
        # kombu's Redis transport keeps a queue as a list named after the queue.
        assert meta["listName"] == worker_queues
        assert int(meta["listLength"]) > 0
        assert meta["address"] == f"{broker.hostname}.{namespace}.svc.cluster.local:{broker.port}"
        assert meta["databaseIndex"] == broker.path.strip("/")
        queues.add(meta["listName"])
    assert queues == set(QUEUES)


# --- deploy/README.md on RabbitMQ --------------------------------------------------------


def test_celery_config_takes_a_rabbitmq_broker_in_principle() -> None:
    """What deploy/README.md says of RabbitMQ, checked without one: make_celery builds an
    app on kombu's AMQP transport with durable queues, tilecast reads no queue depths from
    such a broker, and a task is published by queue name through the default exchange
    (what RabbitMQ delivers to the queue of that name; shown on kombu's memory transport)."""
    from tilecast.common.routing import broker_client
    from tilecast.common.taskprotocol import QUEUE_BULK, QUEUE_INTERACTIVE, make_celery

    amqp = Settings(broker_url="amqp://tilecast:secret@rabbitmq:5672/tilecast").resolved()
    app = make_celery(amqp)
    with app.connection_for_write() as connection:
        assert connection.transport.driver_type == "amqp"
    assert all(queue.durable for queue in app.conf.task_queues)
    assert broker_client(amqp.broker_url) is None

    memory = make_celery(Settings(broker_url="memory://").resolved())
    with memory.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in memory.amqp.queues.values():
            queue.bind(channel).declare()
        memory.send_task(
            "tilecast.render_tiles", args=[{}], queue=QUEUE_BULK, connection=connection
        )
        message = channel.basic_get(QUEUE_BULK, no_ack=True)
        assert message.delivery_info == {"exchange": "", "routing_key": QUEUE_BULK}
        assert channel.queue_declare(QUEUE_INTERACTIVE, passive=True).message_count == 0
