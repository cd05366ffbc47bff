"""The Helm chart, linted, rendered and scored with the real helm and kube-score binaries.

Both are built from the Go module proxy by `make tools` (deploy/install-go-tools.sh) into
.cache/tools/bin. The chart is rendered with its defaults and with ci/production-values.yaml, and
the rendered objects are checked for what the deployment relies on: the topics of
streams/topics.py, a GPU for the image embedder, hardening, probes, the retrain trigger's narrow
RBAC, KEDA in place of the HPAs, Kafka credentials from Secrets, and settings prodcat really has.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from prodcat.core.settings import Settings, TopicNames
from prodcat.streams.app import AGENTS
from prodcat.streams.topics import topic_specs

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "prodcat"
TOOLS = ROOT / ".cache" / "tools" / "bin"
KUBE_SCORE_CONFIG = yaml.safe_load((CHART / ".kube-score.yaml").read_text())
RELEASE = "pc"
FULLNAME = f"{RELEASE}-prodcat"
#: Each scalable role and the key (in kafka.topics) of the topic it consumes.
INPUTS = {
    "normalize": "raw",
    "classify": "normalized",
    "embed": "normalized",
    "sample": "predictions",
    "drift": "predictions",
    "mappings": "normalized",
}
RENDERS = list(KUBE_SCORE_CONFIG["renders"])

Doc = dict[str, Any]


def _tool(name: str) -> str:
    path = TOOLS / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make tools` (deploy/install-go-tools.sh) first")
    return str(path)


def _values_args(render: str) -> list[str]:
    return [arg for v in KUBE_SCORE_CONFIG["renders"][render]["values"] for arg in ("-f", v)]


def _helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("helm"), *args], cwd=CHART, capture_output=True, text=True, timeout=60, check=False
    )


def _template(*args: str) -> list[Doc]:
    proc = _helm("template", RELEASE, ".", "--namespace", "prodcat", *args)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    return {render: _template(*_values_args(render)) for render in RENDERS}


def _of(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _job_template(docs: list[Doc]) -> Doc:
    job: Doc = yaml.safe_load(_of(docs, "ConfigMap")[f"{FULLNAME}-retrain-job"]["data"]["job.yaml"])
    return job


def _pod_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    """Every pod the release runs: Deployments, Jobs and the training Job the trigger launches."""
    for kind in ("Deployment", "Job"):
        for name, workload in _of(docs, kind).items():
            yield name, workload["spec"]["template"]["spec"]
    yield "retrain-job", _job_template(docs)["spec"]["template"]["spec"]


def _env(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


def _config_env(docs: list[Doc]) -> dict[str, str]:
    data: dict[str, str] = _of(docs, "ConfigMap")[f"{FULLNAME}-env"]["data"]
    return data


@pytest.mark.parametrize("render", RENDERS)
def test_helm_lint_strict(render: str) -> None:
    proc = _helm("lint", ".", "--strict", *_values_args(render))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("render", RENDERS)
def test_kube_score_passes(render: str, rendered: dict[str, list[Doc]], tmp_path: Path) -> None:
    """kube-score grades every object (the Job template too); only documented checks are skipped."""
    docs = [*rendered[render], _job_template(rendered[render])]
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    ignored = {**KUBE_SCORE_CONFIG["ignore"], **KUBE_SCORE_CONFIG["renders"][render]["ignore"]}
    assert all(reason.strip() for reason in ignored.values()), "every ignored check needs a reason"
    args = [_tool("kube-score"), "score", "-o", "json"]
    args += ["--kubernetes-version", KUBE_SCORE_CONFIG["kubernetesVersion"]]
    for test in KUBE_SCORE_CONFIG["optionalTests"]:
        args += ["--enable-optional-test", test]
    for test in ignored:
        args += ["--ignore-test", test]
    proc = subprocess.run(
        [*args, str(manifest)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.stdout, proc.stderr
    scored = json.loads(proc.stdout)
    kinds = {o["type_meta"]["kind"] for o in scored}
    assert {"Deployment", "Job", "Service", "NetworkPolicy", "PodDisruptionBudget"} <= kinds
    failures = [
        f"{o['object_name']}: {c['check']['id']} {[x['summary'] for x in c['comments'] or []]}"
        for o in scored
        for c in o["checks"]
        if not c["skipped"] and c["grade"] < 10
    ]
    assert not failures, "\n".join(failures)
    assert proc.returncode == 0, proc.stderr


def test_topics_are_those_of_streams_topics(rendered: dict[str, list[Doc]]) -> None:
    """values.yaml and the Strimzi KafkaTopics carry exactly topic_specs' names, partitions, configs."""
    specs = {s.name: (s.partitions, s.config) for s in topic_specs(TopicNames())}
    values = yaml.safe_load((CHART / "values.yaml").read_text())["kafka"]["topics"]
    assert {t["name"]: (t["partitions"], t["config"]) for t in values.values()} == specs
    # The keys are TopicNames fields, so PRODCAT_TOPICS__<KEY> names each topic.
    assert {key: t["name"] for key, t in values.items()} == {
        key: getattr(TopicNames(), key) for key in values
    }
    production = rendered["production"]
    replicas = yaml.safe_load((CHART / "ci" / "production-values.yaml").read_text())["kafka"][
        "replicationFactor"
    ]
    in_sync = yaml.safe_load((CHART / "values.yaml").read_text())["kafka"]["minInsyncReplicas"]
    topics = {
        t["spec"]["topicName"]: (t["spec"]["partitions"], t["spec"]["config"])
        for t in _of(production, "KafkaTopic").values()
    }
    assert topics == {
        name: (n, {**config, "min.insync.replicas": str(in_sync)})
        for name, (n, config) in specs.items()
    }
    assert {t["spec"]["replicas"] for t in _of(production, "KafkaTopic").values()} == {replicas}
    compacted = {n for n, (_, config) in topics.items() if config["cleanup.policy"] == "compact"}
    assert {"products.normalized", "products.predictions", "labels"} <= compacted
    assert f"{FULLNAME}-topics" not in _of(production, "Job")  # Strimzi creates them
    # An external cluster: a hook Job creates them with `prodcat topics create`, whose layout is
    # topic_specs(TopicNames(partitions=N)).
    job = _of(rendered["default"], "Job")[f"{FULLNAME}-topics"]
    assert "post-install" in job["metadata"]["annotations"]["helm.sh/hook"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["topics", "create"]
    partitions = int(_env(container)["PRODCAT_TOPICS__PARTITIONS"]["value"])
    assert {
        s.name: (s.partitions, s.config) for s in topic_specs(TopicNames(partitions=partitions))
    } == specs


def test_tfserving_embedder_gets_a_gpu_and_the_classifier_does_not(
    rendered: dict[str, list[Doc]],
) -> None:
    production = _of(rendered["production"], "Deployment")
    embedder = production[f"{FULLNAME}-tfserving-embedder"]["spec"]["template"]["spec"]
    (container,) = embedder["containers"]
    assert container["image"].endswith("-gpu")
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert embedder["nodeSelector"] and embedder["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert "--model_config_file=/etc/tfserving/models.config" in container["args"]
    assert any(a.startswith("--file_system_poll_wait_seconds=") for a in container["args"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/image_embedder"
    assert container["livenessProbe"]["tcpSocket"]["port"] == "grpc"
    classifier = production[f"{FULLNAME}-tfserving-classifier"]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in classifier["containers"][0]["resources"]["limits"]
    for _, deployment in _of(rendered["default"], "Deployment").items():
        for c in deployment["spec"]["template"]["spec"]["containers"]:
            assert "nvidia.com/gpu" not in c["resources"]["limits"]
    # The workers call the TF Serving Service of their model over gRPC.
    env = {
        role: _env(production[f"{FULLNAME}-{role}"]["spec"]["template"]["spec"]["containers"][0])
        for role in ("classify", "embed")
    }
    assert env["classify"]["PRODCAT_SERVING__TARGET"]["value"] == (
        f"{FULLNAME}-tfserving-classifier:8500"
    )
    assert env["embed"]["PRODCAT_SERVING__TARGET"]["value"] == f"{FULLNAME}-tfserving-embedder:8500"
    assert env["embed"]["PRODCAT_SERVING__BACKEND"]["value"] == "tfserving"


def test_tfserving_version_policy_from_values() -> None:
    docs = _template(
        "--set",
        "tfserving.classifier.versionPolicy.type=specific",
        "--set",
        "tfserving.classifier.versionPolicy.versions={3,4}",
        "--set",
        "tfserving.classifier.versionLabels.stable=3",
    )
    config = _of(docs, "ConfigMap")[f"{FULLNAME}-tfserving-classifier"]["data"]["models.config"]
    assert "model_version_policy { specific { versions: 3 versions: 4 } }" in config
    assert 'version_labels { key: "stable" value: 3 }' in config
    assert 'base_path: "/models/classifier"' in config
    default = _of(_template(), "ConfigMap")[f"{FULLNAME}-tfserving-classifier"]["data"]
    assert "model_version_policy { latest { num_versions: 2 } }" in default["models.config"]


@pytest.mark.parametrize("render", RENDERS)
def test_every_pod_is_hardened_limited_and_probed(
    render: str, rendered: dict[str, list[Doc]]
) -> None:
    docs = rendered[render]
    pods = dict(_pod_specs(docs))
    jobs = {"retrain-job", *_of(docs, "Job")}
    assert {f"{FULLNAME}-{role}" for role in [*INPUTS, "retrain", "web", "api"]} <= set(pods)
    for name, pod in pods.items():
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001, name
        assert security["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is (name == f"{FULLNAME}-retrain"), name
        mounts = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        assert "tmp" in mounts, name
        for c in pod["containers"]:
            where = f"{name}/{c['name']}"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), where
            context = c["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            if name not in jobs:  # a Job runs to completion: no probes
                assert c["livenessProbe"] and c["readinessProbe"], where
                assert c["livenessProbe"] != c["readinessProbe"], where
    for role in [*INPUTS, "retrain"]:
        (worker,) = pods[f"{FULLNAME}-{role}"]["containers"]
        assert worker["args"] == ["worker", role]
        assert worker["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert worker["livenessProbe"]["httpGet"]["path"] == "/healthz"
        faust = {m["mountPath"] for m in worker["volumeMounts"]}
        assert "/var/lib/prodcat/faust" in faust  # Faust's data dir must be writable
    assert set(INPUTS) | {"retrain"} == set(AGENTS)  # a Deployment per agent role prodcat has
    pdbs = _of(docs, "PodDisruptionBudget")
    assert set(pdbs) == set(_of(docs, "Deployment"))


def test_retrain_trigger_rbac_is_limited_to_jobs_and_pods(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["production"]
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    (role,) = _of(docs, "Role").values()
    rules = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert rules == {
        ("batch", "jobs"): {"create", "get", "list", "watch", "delete"},
        ("", "pods"): {"get", "list"},
        ("", "pods/log"): {"get", "list"},
    }
    (binding,) = _of(docs, "RoleBinding").values()
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": f"{FULLNAME}-retrain", "namespace": "prodcat"}
    ]
    trigger = _of(docs, "Deployment")[f"{FULLNAME}-retrain"]
    assert trigger["spec"]["replicas"] == 1
    assert trigger["spec"]["strategy"]["type"] == "Recreate"
    pod = trigger["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == f"{FULLNAME}-retrain"
    env = _env(pod["containers"][0])
    assert env["PRODCAT_RETRAIN__LAUNCHER"]["value"] == "kubernetes"
    assert env["PRODCAT_RETRAIN__JOB_TEMPLATE"]["value"] == "/etc/prodcat/retrain/job.yaml"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["job-template"]["configMap"]["name"] == f"{FULLNAME}-retrain-job"
    # The Job shares the model store and the work directory with the trigger, at the same paths.
    job = _job_template(docs)
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    job_pod = job["spec"]["template"]["spec"]
    (container,) = [c for c in job_pod["containers"] if c["name"] == "retrain"]
    assert container["args"] == ["retrain", "run"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    job_volumes = {v["name"]: v for v in job_pod["volumes"]}

    def claims(mounts: list[Doc], vols: dict[str, Doc]) -> dict[str, str]:
        return {
            m["mountPath"]: vols[m["name"]]["persistentVolumeClaim"]["claimName"]
            for m in mounts
            if "persistentVolumeClaim" in vols[m["name"]]
        }

    trigger_claims = claims(pod["containers"][0]["volumeMounts"], volumes)
    assert claims(container["volumeMounts"], job_volumes) == trigger_claims
    assert trigger_claims == {
        "/models": f"{FULLNAME}-models",
        "/var/lib/prodcat/retrain": f"{FULLNAME}-retrain",
    }
    assert _config_env(docs)["PRODCAT_RETRAIN__WORK_DIR"] == "/var/lib/prodcat/retrain"


def test_keda_scaled_objects_replace_the_hpas(rendered: dict[str, list[Doc]]) -> None:
    default, production = rendered["default"], rendered["production"]
    assert set(_of(default, "HorizontalPodAutoscaler")) == {f"{FULLNAME}-{r}" for r in INPUTS}
    assert not _of(default, "ScaledObject")
    assert not _of(production, "HorizontalPodAutoscaler")
    scaled = _of(production, "ScaledObject")
    assert set(scaled) == {f"{FULLNAME}-{r}" for r in INPUTS}
    topics = yaml.safe_load((CHART / "values.yaml").read_text())["kafka"]["topics"]
    (auth,) = _of(production, "TriggerAuthentication").values()
    assert {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]} == {
        "username",
        "password",
        "ca",
    }
    deployments = _of(production, "Deployment")
    for role, key in INPUTS.items():
        spec = scaled[f"{FULLNAME}-{role}"]["spec"]
        assert spec["scaleTargetRef"]["name"] == f"{FULLNAME}-{role}"
        assert spec["maxReplicaCount"] <= topics[key]["partitions"]
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["consumerGroup"] == f"prodcat-{role}"
        assert trigger["metadata"]["topic"] == topics[key]["name"]
        assert trigger["metadata"]["sasl"] == "scram_sha512"
        assert trigger["metadata"]["tls"] == "enable"
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
        assert "replicas" not in deployments[f"{FULLNAME}-{role}"]["spec"]


def test_kafka_sasl_and_ca_come_from_secrets(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["production"]
    (user,) = _of(docs, "KafkaUser")
    config = _config_env(docs)
    assert config["PRODCAT_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["PRODCAT_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert config["PRODCAT_KAFKA__SASL_USERNAME"] == user
    assert config["PRODCAT_KAFKA__BOOTSTRAP_SERVERS"] == f"{FULLNAME}-kafka-kafka-bootstrap:9093"
    assert "PRODCAT_KAFKA__SASL_PASSWORD" not in config
    for name, pod in _pod_specs(docs):
        if "tfserving" in name:
            continue
        (container,) = pod["containers"]
        password = _env(container)["PRODCAT_KAFKA__SASL_PASSWORD"]
        assert password["valueFrom"]["secretKeyRef"] == {"name": user, "key": "password"}, name
        ca = {v["name"]: v for v in pod["volumes"]}["kafka-ca"]["secret"]["secretName"]
        assert ca == f"{FULLNAME}-kafka-cluster-ca-cert", name
        mount = {m["name"]: m for m in container["volumeMounts"]}["kafka-ca"]
        assert config["PRODCAT_KAFKA__SSL_CAFILE"].startswith(mount["mountPath"] + "/"), name
    # An external cluster: user name and password from the operator's own Secret.
    external = _template(
        "--set",
        "kafka.bootstrapServers=broker-0.kafka:9094",
        "--set",
        "kafka.securityProtocol=SASL_SSL",
        "--set",
        "kafka.sasl.mechanism=PLAIN",
        "--set",
        "kafka.sasl.existingSecret=kafka-creds",
        "--set",
        "kafka.sasl.usernameKey=user",
        "--set",
        "kafka.tls.caSecret=kafka-ca",
    )
    worker = _of(external, "Deployment")[f"{FULLNAME}-normalize"]["spec"]["template"]["spec"]
    env = _env(worker["containers"][0])
    assert env["PRODCAT_KAFKA__SASL_USERNAME"]["valueFrom"]["secretKeyRef"] == {
        "name": "kafka-creds",
        "key": "user",
    }
    assert env["PRODCAT_KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "kafka-creds"
    assert "PRODCAT_KAFKA__SASL_USERNAME" not in _config_env(external)
    assert not _of(external, "Kafka") and not _of(external, "KafkaTopic")


@pytest.mark.parametrize("render", RENDERS)
def test_every_variable_the_chart_sets_is_a_prodcat_setting(
    render: str, rendered: dict[str, list[Doc]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Settings (sections forbid unknown fields) accept the ConfigMap and each pod's plain env."""
    docs = rendered[render]
    ca = tmp_path / "ca.crt"
    ca.write_text("not read here")
    for name, pod in _pod_specs(docs):
        if "tfserving" in name:
            continue
        env = dict(_config_env(docs))
        env.update({k: v["value"] for k, v in _env(pod["containers"][0]).items() if "value" in v})
        env.update({k: "secret" for k, v in _env(pod["containers"][0]).items() if "valueFrom" in v})
        if "PRODCAT_KAFKA__SSL_CAFILE" in env:
            env["PRODCAT_KAFKA__SSL_CAFILE"] = str(ca)  # the mounted Secret, here a local file
        sections = {key.removeprefix("PRODCAT_").split("__")[0].lower() for key in env}
        assert sections <= set(Settings.model_fields), name
        with monkeypatch.context() as m:
            for key, value in env.items():
                m.setenv(key, value)
            settings = Settings()
        assert settings.worker.metrics_host == "0.0.0.0", name


def test_monitoring_objects(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["production"]
    alerts = yaml.safe_load((CHART / "files" / "prometheus" / "alerts.yml").read_text())
    (rule,) = _of(docs, "PrometheusRule").values()
    assert rule["spec"]["groups"] == alerts["groups"]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    services = _of(docs, "Service")
    monitors = _of(docs, "ServiceMonitor")
    assert set(monitors) == {f"{FULLNAME}-{n}" for n in ("workers", "web", "api", "tfserving")}
    jobs = set()
    for name, monitor in monitors.items():
        wanted = monitor["spec"]["selector"]["matchLabels"]
        (endpoint,) = monitor["spec"]["endpoints"]
        selected = [
            s
            for s in services.values()
            if wanted.items() <= s["metadata"]["labels"].items()
            and endpoint["port"] in {p["name"] for p in s["spec"]["ports"]}
        ]
        assert selected, name
        jobs |= {s["metadata"]["labels"][monitor["spec"]["jobLabel"]] for s in selected}
    # The alert rules select scrape jobs by name (`job=~".*prodcat.*"`), as in the compose file.
    assert jobs == {f"prodcat-{r}" for r in [*INPUTS, "retrain", "web", "api"]} | {
        "prodcat-tfserving-classifier",
        "prodcat-tfserving-embedder",
    }
    assert len([s for s in services if s.endswith("-metrics")]) == len(INPUTS) + 1
    dashboards = sorted((CHART / "files" / "grafana").glob("*.json"))
    configmaps = [
        cm
        for cm in _of(docs, "ConfigMap").values()
        if cm["metadata"]["labels"].get("grafana_dashboard")
    ]
    assert len(configmaps) == len(dashboards) > 0
    assert {key for cm in configmaps for key in cm["data"]} == {p.name for p in dashboards}
    for cm in configmaps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        for key, text in cm["data"].items():
            assert json.loads(text) == json.loads((CHART / "files" / "grafana" / key).read_text())


def test_network_policies(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["default"]
    policies = _of(docs, "NetworkPolicy")
    deny = policies[f"{FULLNAME}-default-deny"]["spec"]
    assert deny["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "prodcat",
        "app.kubernetes.io/instance": RELEASE,
    }
    assert deny["policyTypes"] == ["Ingress", "Egress"]
    tfserving = policies[f"{FULLNAME}-allow-tfserving"]["spec"]
    (allowed,) = tfserving["ingress"]
    client = allowed["from"][0]["podSelector"]["matchLabels"]
    assert allowed["ports"] == [{"port": 8500, "protocol": "TCP"}]
    callers = {
        name
        for name, d in _of(docs, "Deployment").items()
        if client.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    }
    assert callers == {f"{FULLNAME}-{n}" for n in ("classify", "embed", "web", "api")}
    metrics = policies[f"{FULLNAME}-allow-metrics"]["spec"]["ingress"][0]["ports"]
    assert {p["port"] for p in metrics} == {9464, 8080, 8000, 8501}


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("kafka.securityProtocol=SASL_PLAIN", "securityProtocol"),
        ("tfserving.embedder.versionPolicy.type=newest", "versionPolicy/type"),
        ("web.replicas=2", "web/replicas"),
        ("agents.classfy.enabled=true", "classfy"),
        ("agents.classify.autoscaling.maxReplicas=8", "exceeds the 4 partitions"),
        ("kafka.topics.raw.partitions=6", "create the topics yourself"),
    ],
)
def test_bad_values_are_rejected(setting: str, message: str) -> None:
    """The schema (enums, bounds, unknown keys) and the chart's own checks refuse bad values."""
    proc = _helm("template", RELEASE, ".", "--set", setting)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_taxonomy_editors_get_the_model_store_read_write() -> None:
    """The Taxonomy page writes remapped model versions: with editors the web pod mounts the
    model store read-write and knows them; without, read-only (and the API pod always)."""

    def mounts(docs: list[Doc], component: str) -> dict[str, Doc]:
        pod = _of(docs, "Deployment")[f"{FULLNAME}-{component}"]["spec"]["template"]["spec"]
        return {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}

    default = _template()
    assert mounts(default, "web")["models"]["readOnly"] is True
    assert _config_env(default)["PRODCAT_UI__TAXONOMY_EDITORS"] == "[]"
    editors = _template("--set", "web.taxonomyEditors={alice,bob}")
    assert mounts(editors, "web")["models"]["readOnly"] is False
    assert mounts(editors, "api")["models"]["readOnly"] is True
    assert json.loads(_config_env(editors)["PRODCAT_UI__TAXONOMY_EDITORS"]) == ["alice", "bob"]
