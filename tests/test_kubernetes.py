"""deploy/kubernetes: every manifest valid against its schema (kubernetes-validate for the core kinds, KEDA's
own CRDs for ScaledObject and TriggerAuthentication, strict: an unknown field is an error, as with
`kubectl apply --validate=strict`), and consistent with the code it deploys: the settings exist, the
streams, groups and queues KEDA watches are the ones the relay writes, every queue has a worker, every
selector finds its pods."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from flask import Flask

from app.core import secret_strength
from app.core.config import RelayConfig
from app.stores import intake_stream, queues
from app.stores.intake_stream import IntakeStream
from app.stores.lane_stream import LaneStream
from app.web import health

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
SCHEMAS = DEPLOY / "schemas"
# the oldest release still supported upstream, and the newest
KUBERNETES_VERSIONS = (
    "1.35.0",
    "1.37.0",
)
CRDS = {
    "ScaledObject": "keda.sh_scaledobjects.yaml",
    "TriggerAuthentication": "keda.sh_triggerauthentications.yaml",
}


# what KEDA's Redis scalers require (pkg/scalers/redis_scaler.go, redis_streams_scaler.go, KEDA 2.20)
SCALER_KEYS = {
    "redis-sentinel": {"addresses", "sentinelMaster", "listName"},
    "redis-sentinel-streams": {"addresses", "sentinelMaster", "stream"},
}


def _manifests() -> list[tuple[str, dict]]:
    return [
        (path.name, doc)
        for path in sorted(DEPLOY.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


MANIFESTS = _manifests()


def _of(kind: str) -> list[dict]:
    return [doc for _, doc in MANIFESTS if doc["kind"] == kind]


def _strict(schema: dict) -> dict:
    """A CRD's structural schema that refuses unknown fields (the API server would prune them silently)."""
    schema = copy.deepcopy(schema)

    def close(node: dict) -> None:
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for child in node.get("properties", {}).values():
            close(child)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                close(node[key])

    close(schema)
    # ObjectMeta is checked by the API server, not here
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


def _crd_schema(kind: str, version: str) -> dict:
    crd = yaml.safe_load((SCHEMAS / CRDS[kind]).read_text())
    [served] = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return _strict(served["schema"]["openAPIV3Schema"])


@pytest.mark.parametrize(
    ("name", "doc"),
    MANIFESTS,
    ids=[f"{n}:{d['kind']}/{d['metadata']['name']}" for n, d in MANIFESTS],
)
def test_every_manifest_is_valid_against_its_schema(name, doc):
    if doc["kind"] in CRDS:
        group, version = doc["apiVersion"].split("/")
        assert group == "keda.sh"
        jsonschema.validate(doc, _crd_schema(doc["kind"], version))
        return
    for kubernetes in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(doc, kubernetes, strict=True)


def test_the_strict_check_catches_an_unknown_or_mistyped_field():
    scaled = copy.deepcopy(_of("ScaledObject")[0])
    scaled["spec"]["minReplicas"] = 1  # the HPA's word, not KEDA's (minReplicaCount)
    with pytest.raises(jsonschema.ValidationError, match="minReplicas"):
        jsonschema.validate(scaled, _crd_schema("ScaledObject", "v1alpha1"))
    web = copy.deepcopy(next(d for d in _of("Deployment") if d["metadata"]["name"] == "relay-web"))
    web["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, KUBERNETES_VERSIONS[-1], strict=True)


def test_every_setting_is_one_the_relay_reads():
    known = {f"RELAY_{name.upper()}" for name in RelayConfig.__dataclass_fields__}
    for doc in _of("ConfigMap") + _of("Secret"):
        settings = set(doc.get("data", {})) | set(doc.get("stringData", {}))
        assert settings <= known, (
            f"{doc['metadata']['name']}: not settings of the relay: {settings - known}"
        )


def test_the_example_secret_holds_no_key_the_relay_would_use():
    """Its placeholders are public: a relay that signed links and sessions with one could be forged
    against. Each is refused at start, by name (an empty admin token turns the dashboard off)."""
    [secret] = _of("Secret")
    values = secret["stringData"]
    found = secret_strength.problems(RelayConfig.from_env(values))
    for name in ("RELAY_SECRET_KEY", "RELAY_ADMIN_TOKEN"):
        assert values[name] == "" or any(p.startswith(f"{name} is a placeholder") for p in found)
    assert values["RELAY_SECRET_KEY"], "an empty key would be made at random, not refused"


def test_keda_watches_the_streams_groups_and_queues_the_relay_writes():
    triggers = [t for scaled in _of("ScaledObject") for t in scaled["spec"]["triggers"]]
    for trigger in triggers:
        metadata = trigger["metadata"]
        assert SCALER_KEYS[trigger["type"]] <= set(metadata), trigger["name"]
        assert metadata["sentinelMaster"] == RelayConfig().redis_master_name
        if "lagCount" in metadata:
            assert "consumerGroup" in metadata, "KEDA reads a lag only for a consumer group"
    streams = {
        t["metadata"]["stream"]: t["metadata"].get("consumerGroup")
        for t in triggers
        if "stream" in t["metadata"]
    }
    prefix = RelayConfig().key_prefix
    assert streams == {
        IntakeStream(None, prefix, None, 0).key: intake_stream.GROUP,
        LaneStream(None, prefix).key: None,
    }, (
        "the intake stream's lag for its pump group; the lane's whole length (acknowledged entries are deleted)"
    )
    lists = {t["metadata"]["listName"] for t in triggers if "listName" in t["metadata"]}
    assert lists <= {f"rq:queue:{name}" for name in queues.ALL}


def test_every_queue_has_a_worker_and_every_autoscaler_a_target():
    deployments = {d["metadata"]["name"]: d for d in _of("Deployment")}
    served = set()
    for deployment in deployments.values():
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        if args[:2] == ["relay", "worker"]:
            served |= set(args[args.index("--queues") + 1].split(","))
    assert served == set(queues.ALL)
    for scaler in _of("ScaledObject") + _of("HorizontalPodAutoscaler"):
        assert scaler["spec"]["scaleTargetRef"]["name"] in deployments
    scheduler = deployments["relay-scheduler"]["spec"]
    assert scheduler["replicas"] == 1 and scheduler["strategy"]["type"] == "Recreate"


def test_every_selector_finds_its_pods_and_the_probes_exist():
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in _of("Deployment")]
    for doc in _of("Service") + _of("PodDisruptionBudget"):
        selector = doc["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert any(selector.items() <= labels.items() for labels in pod_labels), doc["metadata"][
            "name"
        ]
    app = Flask(__name__)
    app.register_blueprint(health.bp)
    routes = {rule.rule for rule in app.url_map.iter_rules()}
    for deployment in _of("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert "requests" in container["resources"], (
                "resource requests, for the scheduler and autoscalers"
            )
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if probe in container:
                    assert container[probe]["httpGet"]["path"] in routes
    secret_keys = {key for secret in _of("Secret") for key in secret["stringData"]}
    for auth in _of("TriggerAuthentication"):
        assert {ref["key"] for ref in auth["spec"]["secretTargetRef"]} <= secret_keys


def test_the_redis_values_are_the_charts_own_and_match_the_relay():
    ours = yaml.safe_load((DEPLOY / "redis" / "values.yaml").read_text())
    defaults = yaml.safe_load((SCHEMAS / "redis-ha-4.39.0-values.yaml").read_text())
    # any option of Redis
    free = {
        "redis.config",
        "sentinel.config",
        "redis.resources",
        "sentinel.resources",
    }

    def unknown(mine: dict, theirs: dict, path: str = "") -> list[str]:
        found = []
        for key, value in mine.items():
            if key not in theirs:
                found.append(path + key)
            # {}: the chart's own free map
            elif isinstance(value, dict) and theirs[key] and path + key not in free:
                found += unknown(value, theirs[key], f"{path}{key}.")
        return found

    assert unknown(ours, defaults) == [], (
        "values the chart does not have (helm would ignore them silently)"
    )
    [config] = _of("ConfigMap")
    assert ours["redis"]["masterGroupName"] == config["data"]["RELAY_REDIS_MASTER_NAME"]
    assert int(ours["redis"]["config"]["min-replicas-to-write"]) == int(
        config["data"]["RELAY_REDIS_MIN_REPLICAS"]
    )
    assert config["data"]["RELAY_REDIS_SENTINELS"].split(",") == [
        f"relay-redis-ha-announce-{n}:{defaults['sentinel']['port']}"
        for n in range(ours["replicas"])
    ]
    failover_ms = float(config["data"]["RELAY_REDIS_FAILOVER_SECONDS"]) * 1000
    assert failover_ms >= 3 * ours["sentinel"]["config"]["down-after-milliseconds"]
