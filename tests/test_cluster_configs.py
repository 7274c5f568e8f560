"""Static checks of the cluster configs in cluster/ (no Ray cluster, no cloud calls).

* cluster/aws/raylake.yaml goes through Ray's own autoscaler schema validation and
  the defaults `ray up` fills in before it talks to AWS.
* cluster/kuberay/*.yaml are checked against the KubeRay ray.io/v1 field names,
  the images, resources, autoscaling bounds and token authentication.
* No config carries a literal secret, and every `jobs/*.py` a config or the
  runbook runs exists in the repository.

Each checker raises AssertionError; the tests that break a copy of a config prove
the checkers can fail.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
AWS_CONFIG = REPO / "cluster" / "aws" / "raylake.yaml"
RAYCLUSTER = REPO / "cluster" / "kuberay" / "raycluster.yaml"
RAYJOB = REPO / "cluster" / "kuberay" / "rayjob.yaml"
RAYSERVICE = REPO / "cluster" / "kuberay" / "rayservice.yaml"
RUNBOOK = REPO / "docs" / "runbook.md"

RAY_VERSION = "2.60.0"
CPU_IMAGE_K8S = f"rayproject/ray:{RAY_VERSION}-py311"
GPU_IMAGE = f"rayproject/ray:{RAY_VERSION}-py311-gpu"
CPU_IMAGE_DOCKER = f"rayproject/ray:{RAY_VERSION}-py311-cpu"
# The images built from cluster/docker/Dockerfile (raylake installed on Ray's image).
DOCKERFILE = REPO / "cluster" / "docker" / "Dockerfile"
RAYLAKE_CPU_IMAGE = "CHANGE-ME/raylake:0.1.0-cpu"
RAYLAKE_GPU_IMAGE = "CHANGE-ME/raylake:0.1.0-gpu"
AUTH_SECRET_KEY = "auth_token"  # the data key KubeRay expects in the token Secret

# Field names of the KubeRay ray.io/v1 CRDs (KubeRay 1.6). Depending on the client's
# field validation a misspelled field is an error or silently dropped; reject it here.
RAYCLUSTER_SPEC_FIELDS = {
    "authOptions", "autoscalerOptions", "enableInTreeAutoscaling",
    "gcsFaultToleranceOptions", "headGroupSpec", "headServiceAnnotations",
    "managedBy", "networkPolicy", "rayVersion", "suspend", "tlsOptions",
    "upgradeStrategy", "workerGroupSpecs",
}
HEAD_GROUP_FIELDS = {
    "enableIngress", "headService", "labels", "rayStartParams", "resources",
    "serviceType", "template",
}
WORKER_GROUP_FIELDS = {
    "groupName", "idleTimeoutSeconds", "labels", "maxReplicas", "minReplicas",
    "numOfHosts", "rayStartParams", "replicas", "resources", "scaleStrategy",
    "suspend", "template",
}
AUTOSCALER_OPTIONS_FIELDS = {
    "env", "envFrom", "idleTimeoutSeconds", "image", "imagePullPolicy",
    "resources", "securityContext", "upscalingMode", "version", "volumeMounts",
}
AUTH_OPTIONS_FIELDS = {"enableK8sTokenAuth", "mode", "secretName"}
RAYJOB_SPEC_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "clusterSelector", "deletionStrategy",
    "entrypoint", "entrypointNumCpus", "entrypointNumGpus", "entrypointResources",
    "jobId", "managedBy", "metadata", "rayClusterSpec", "runtimeEnvYAML",
    "shutdownAfterJobFinishes", "submissionMode", "submitterConfig",
    "submitterPodTemplate", "suspend", "ttlSecondsAfterFinished",
}
RAYSERVICE_SPEC_FIELDS = {
    "deploymentUnhealthySecondThreshold", "excludeHeadPodFromServeSvc", "managedBy",
    "rayClusterConfig", "serveConfigV2", "serveService", "serviceUnhealthySecondThreshold",
    "upgradeStrategy",
}
SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}

JOB_SCRIPT = re.compile(r"\bjobs/[A-Za-z0-9_]+\.py\b")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def only(path: Path, kind: str) -> dict[str, Any]:
    docs = load_all(path)
    assert [d.get("kind") for d in docs] == [kind], f"{path.name}: expected one {kind}"
    return docs[0]


# ---------------------------------------------------------------- AWS (ray up) --


def ray_validate(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does before its first AWS call: schema check, defaults, check."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = copy.deepcopy(config)
    validate_config(config)
    prepared = prepare_config(config)
    validate_config(prepared)
    return prepared


def check_aws_node_types(config: dict[str, Any]) -> None:
    assert config["provider"]["type"] == "aws"
    assert config["provider"]["region"] == "us-west-2"
    assert config["auth"]["ssh_user"] == "ubuntu"
    assert config["idle_timeout_minutes"] > 0
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["node_config"]["InstanceType"].startswith("m5."), "head is a CPU node"
    assert head.get("resources", {}).get("GPU", 0) == 0
    assert head.get("max_workers", 0) == 0

    cpu = [t for name, t in types.items() if name != config["head_node_type"]
           and not t["resources"].get("GPU")]
    gpu = [t for t in types.values() if t["resources"].get("GPU", 0) > 0]
    assert len(cpu) == 1 and len(gpu) == 1, "one CPU and one GPU worker type"
    cpu_t, gpu_t = cpu[0], gpu[0]
    assert cpu_t["node_config"]["InstanceType"] == "m5.4xlarge"
    assert (cpu_t["min_workers"], cpu_t["max_workers"]) == (0, 10)
    assert cpu_t["resources"].get("CPU", 0) > 0
    assert gpu_t["node_config"]["InstanceType"] in ("g5.xlarge", "g5.12xlarge")
    assert (gpu_t["min_workers"], gpu_t["max_workers"]) == (0, 4)
    gpus = {"g5.xlarge": 1, "g5.12xlarge": 4}[gpu_t["node_config"]["InstanceType"]]
    assert gpu_t["resources"]["GPU"] == gpus, "GPU count matches the instance type"
    assert config["max_workers"] >= cpu_t["max_workers"] + gpu_t["max_workers"]

    docker = config["docker"]
    assert docker["image"] == CPU_IMAGE_DOCKER
    assert gpu_t["docker"]["worker_image"] == GPU_IMAGE


def check_aws_install(config: dict[str, Any]) -> None:
    """torch is installed before raylake; the GPU type gets the CUDA build."""

    def torch_then_raylake(cmds: list[str]) -> list[str]:
        torch = [i for i, c in enumerate(cmds) if "torch==" in c]
        raylake = [i for i, c in enumerate(cmds) if re.search(r"install\b.*\braylake\b", c)]
        assert torch and raylake, f"no torch/raylake install in {cmds}"
        assert max(torch) < min(raylake), f"torch must come before raylake: {cmds}"
        return [cmds[i] for i in torch]

    cpu_torch = torch_then_raylake(config["setup_commands"])
    assert all("whl/cpu" in c for c in cpu_torch), "CPU nodes get the CPU torch wheel"
    gpu = [t for t in config["available_node_types"].values() if t["resources"].get("GPU")]
    gpu_torch = torch_then_raylake(gpu[0]["worker_setup_commands"])
    assert not any("whl/cpu" in c for c in gpu_torch), "GPU nodes need CUDA torch"


def check_aws_token_auth(config: dict[str, Any]) -> None:
    from ray._private.authentication.authentication_token_setup import (
        AUTH_MODE_ENV_VAR,
        _get_default_token_path,
    )

    default_token = "~/" + _get_default_token_path().relative_to(Path.home()).as_posix()
    mounts = {remote for remote, local in config["file_mounts"].items() if local == default_token}
    assert mounts, f"file_mounts must copy the laptop's {default_token} to the nodes"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in config[key] if "ray start" in c]
        assert start, f"{key} has no `ray start`"
        for cmd in start:
            assert f"{AUTH_MODE_ENV_VAR}=token" in cmd, f"{key}: token auth is off"
            path = re.search(r"RAY_AUTH_TOKEN_PATH=(\S+?);?(\s|$)", cmd)
            assert path, f"{key}: no RAY_AUTH_TOKEN_PATH"
            assert path.group(1).replace("$HOME", "~") in mounts, (
                f"{key}: RAY_AUTH_TOKEN_PATH {path.group(1)} is not a mounted token file"
            )
    head = " ".join(config["head_start_ray_commands"])
    assert "--head" in head and "--autoscaling-config=~/ray_bootstrap_config.yaml" in head


@pytest.fixture(scope="module")
def aws() -> dict[str, Any]:
    return load(AWS_CONFIG)


def test_aws_config_passes_ray_validation(aws):
    prepared = ray_validate(aws)
    check_aws_node_types(prepared)
    # prepare_config must not have replaced our commands with Ray's defaults
    # (which pip-install a nightly Ray wheel).
    assert not any("ray-wheels" in c for c in prepared["setup_commands"])


def test_aws_config_node_types(aws):
    check_aws_node_types(aws)


def test_aws_config_installs_torch_then_raylake(aws):
    check_aws_install(aws)


def test_aws_config_enables_token_auth_on_every_node(aws):
    check_aws_token_auth(aws)


def _drop(path: tuple[str, ...]):
    def mutate(c: dict[str, Any]) -> None:
        node = c
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


def _set(path: tuple[str, ...], value: Any):
    def mutate(c: dict[str, Any]) -> None:
        node = c
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    "mutate",
    [
        _drop(("provider",)),
        _drop(("cluster_name",)),
        _drop(("available_node_types", "ray.worker.gpu", "resources")),
        _drop(("available_node_types", "ray.worker.cpu", "node_config")),
        _drop(("cluster_synced_files",)),
        _set(("head_node_type",), "ray.head.missing"),
        _set(("available_node_types", "ray.worker.cpu", "min_workers"), 20),
        _set(("available_node_types", "ray.worker.gpu", "resources", "GPU"), "one"),
        _set(("docker", "imagee"), "typo"),
        _set(("idle_timeout_minute",), 5),
    ],
    ids=[
        "no-provider", "no-cluster_name", "gpu-no-resources", "cpu-no-node_config",
        "no-cluster_synced_files", "bad-head_node_type", "min_workers-over-max",
        "gpu-count-not-int", "docker-typo", "top-level-typo",
    ],
)
def test_ray_validation_rejects_broken_copies(aws, mutate):
    import jsonschema

    broken = copy.deepcopy(aws)
    mutate(broken)
    with pytest.raises((jsonschema.ValidationError, ValueError, RuntimeError)):
        ray_validate(broken)


@pytest.mark.parametrize(
    "mutate, checker",
    [
        (_set(("available_node_types", "ray.worker.gpu", "max_workers"), 8), check_aws_node_types),
        (_set(("available_node_types", "ray.worker.gpu", "resources", "GPU"), 2),
         check_aws_node_types),
        (_set(("docker", "image"), "rayproject/ray:latest"), check_aws_node_types),
        (_set(("setup_commands",), ["pip install raylake", "pip install torch==2.13.0"]),
         check_aws_install),
        (_set(("worker_start_ray_commands",), ["ray stop", "ray start --address=$HEAD:6379"]),
         check_aws_token_auth),
        (_set(("file_mounts",), {}), check_aws_token_auth),
    ],
    ids=["gpu-max", "gpu-count", "image", "install-order", "worker-no-token", "no-token-mount"],
)
def test_aws_checkers_catch_broken_copies(aws, mutate, checker):
    broken = copy.deepcopy(aws)
    mutate(broken)
    with pytest.raises(AssertionError):
        checker(broken)


# -------------------------------------------------------------------- KubeRay --


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    return template["spec"]["containers"]


def env_map(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    names = [e["name"] for e in container.get("env", [])]
    assert len(names) == len(set(names)), f"duplicate env in {container['name']}"
    return {e["name"]: e for e in container.get("env", [])}


def check_resources(container: dict[str, Any], gpu: bool) -> None:
    res = container.get("resources", {})
    for part in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(res.get(part, {})), f"{container['name']}: {part}"
    if gpu:
        limit = res["limits"].get("nvidia.com/gpu")
        assert limit is not None and int(limit) >= 1, "GPU group needs an nvidia.com/gpu limit"
        assert res["requests"].get("nvidia.com/gpu", limit) == limit, "GPU request != limit"
    else:
        assert "nvidia.com/gpu" not in res.get("limits", {})
        assert "nvidia.com/gpu" not in res.get("requests", {})


def check_token_env(container: dict[str, Any], secret: str) -> None:
    env = env_map(container)
    assert "RAY_AUTH_MODE" in env and "RAY_AUTH_TOKEN" in env, f"{container['name']}: no auth env"
    assert env["RAY_AUTH_MODE"].get("value") == "token", f"{container['name']}: auth off"
    token = env["RAY_AUTH_TOKEN"]
    assert "value" not in token, "the token must come from a Secret, not a literal"
    ref = token["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == (secret, AUTH_SECRET_KEY)


def check_cluster_spec(spec: dict[str, Any], *, want_gpu: bool,
                       images: tuple[str, str] = (CPU_IMAGE_K8S, GPU_IMAGE)) -> None:
    cpu_image, gpu_image = images
    unknown = set(spec) - RAYCLUSTER_SPEC_FIELDS
    assert not unknown, f"unknown fields {unknown}"
    assert spec["rayVersion"] == RAY_VERSION
    assert spec["enableInTreeAutoscaling"] is True
    auto = spec["autoscalerOptions"]
    assert set(auto) <= AUTOSCALER_OPTIONS_FIELDS
    assert auto.get("upscalingMode", "Default") in {"Default", "Aggressive", "Conservative"}
    auth = spec["authOptions"]
    assert set(auth) <= AUTH_OPTIONS_FIELDS and auth["mode"] == "token"
    secret = auth["secretName"]

    head = spec["headGroupSpec"]
    assert set(head) <= HEAD_GROUP_FIELDS
    assert all(isinstance(v, str) for v in head["rayStartParams"].values()), (
        "rayStartParams values must be strings"
    )
    (head_c,) = containers(head["template"])
    assert head_c["image"] == cpu_image
    assert {p["containerPort"] for p in head_c["ports"]} >= {6379, 8265}
    check_resources(head_c, gpu=False)
    check_token_env(head_c, secret)

    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert len(groups) == len(spec["workerGroupSpecs"]), "duplicate groupName"
    assert "cpu" in groups
    assert ("gpu" in groups) == want_gpu
    for name, group in groups.items():
        assert set(group) <= WORKER_GROUP_FIELDS, f"{name}: unknown fields"
        lo, hi = group["minReplicas"], group["maxReplicas"]
        assert 0 <= lo <= group.get("replicas", lo) <= hi, f"{name}: replicas out of bounds"
        (c,) = containers(group["template"])
        is_gpu = name == "gpu"
        assert c["image"] == (gpu_image if is_gpu else cpu_image)
        check_resources(c, gpu=is_gpu)
        check_token_env(c, secret)
    assert groups["cpu"]["maxReplicas"] >= 1
    if want_gpu:
        assert (groups["gpu"]["minReplicas"], groups["gpu"]["maxReplicas"]) == (0, 4)
        assert (groups["cpu"]["minReplicas"], groups["cpu"]["maxReplicas"]) == (0, 10)


def check_rayjob(job: dict[str, Any]) -> None:
    from ray.runtime_env import RuntimeEnv

    spec = job["spec"]
    assert set(spec) <= RAYJOB_SPEC_FIELDS, f"unknown fields {set(spec) - RAYJOB_SPEC_FIELDS}"
    entry = spec["entrypoint"].split()
    assert entry[:2] == ["python", "jobs/ingest.py"], spec["entrypoint"]
    assert "dataset=nycflights13" in entry
    assert any(a.startswith("lake.root=s3://") for a in entry)
    assert spec.get("submissionMode", "K8sJobMode") in SUBMISSION_MODES
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0
    assert ("rayClusterSpec" in spec) != ("clusterSelector" in spec)

    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    RuntimeEnv(**runtime_env)  # Ray's own validation of every field
    packages = runtime_env["pip"]["packages"] if isinstance(runtime_env["pip"], dict) \
        else runtime_env["pip"]
    names = [re.split(r"[=<>!~\[ ]", p, maxsplit=1)[0] for p in packages]
    # torch first (its CPU build), then raylake's dependencies; raylake itself comes with
    # the working_dir (jobs/_tree.py, py_modules), as no package index has it.
    assert names[0] == "torch" and "deltalake" in names and "raylake" not in names
    assert runtime_env.get("working_dir")
    if "rayClusterSpec" in spec:
        check_cluster_spec(spec["rayClusterSpec"], want_gpu=False)


def check_rayservice(service: dict[str, Any]) -> None:
    """The model server's RayService: a valid Serve config for raylake's app builder,
    whose args are a valid raylake config, on a cluster that passes the cluster checks."""
    from ray.runtime_env import RuntimeEnv
    from ray.serve.schema import ServeDeploySchema

    from raylake.serve.app import config_from_args

    spec = service["spec"]
    assert set(spec) <= RAYSERVICE_SPEC_FIELDS, f"unknown fields {set(spec) - RAYSERVICE_SPEC_FIELDS}"
    serve_config = ServeDeploySchema(**yaml.safe_load(spec["serveConfigV2"]))
    (app,) = serve_config.applications
    assert app.import_path == "raylake.serve.app:app_builder"
    assert serve_config.http_options.host == "0.0.0.0", "the proxy must listen beyond the pod"
    (dep,) = app.deployments
    assert dep.name == "ModelServer"
    auto = dep.autoscaling_config
    assert 1 <= auto["min_replicas"] <= auto["max_replicas"]
    assert 0 < dep.ray_actor_options.num_cpus <= 1
    assert dep.max_ongoing_requests >= app.args["config"]["model_server"].get("max_batch_size", 32)
    RuntimeEnv(**app.runtime_env)
    # No package index has raylake: the app imports it from the image, never a pip install.
    assert "pip" not in app.runtime_env and "raylake" not in str(app.runtime_env)
    conf = config_from_args(app.args["config"])  # what app_builder does on the cluster
    assert conf.lake.root.startswith("s3://")
    arms = conf.model_server.arms
    assert arms and any(not a.shadow for a in arms.values())
    assert all(re.fullmatch(r"[\w-]+:\d+", a.model) for a in arms.values()), (
        "pin each arm to a version: a moving `champion` would differ between replicas")
    check_cluster_spec(spec["rayClusterConfig"], want_gpu=False,
                       images=(RAYLAKE_CPU_IMAGE, RAYLAKE_GPU_IMAGE))


@pytest.fixture(scope="module")
def raycluster() -> dict[str, Any]:
    return only(RAYCLUSTER, "RayCluster")


@pytest.fixture(scope="module")
def rayjob() -> dict[str, Any]:
    return only(RAYJOB, "RayJob")


@pytest.mark.parametrize("path", [RAYCLUSTER, RAYJOB, RAYSERVICE], ids=lambda p: p.name)
def test_manifests_are_ray_io_v1(path):
    for doc in load_all(path):
        assert doc["apiVersion"] == "ray.io/v1"
        assert doc["kind"] in {"RayCluster", "RayJob", "RayService"}
        assert doc["metadata"]["name"]


def test_raycluster(raycluster):
    check_cluster_spec(raycluster["spec"], want_gpu=True)


def test_rayjob(rayjob):
    check_rayjob(rayjob)


@pytest.fixture(scope="module")
def rayservice() -> dict[str, Any]:
    return only(RAYSERVICE, "RayService")


def test_rayservice(rayservice):
    check_rayservice(rayservice)


def _serve_config(edit):
    def mutate(service):
        config = yaml.safe_load(service["spec"]["serveConfigV2"])
        edit(config["applications"][0])
        service["spec"]["serveConfigV2"] = yaml.safe_dump(config)

    return mutate


@pytest.mark.parametrize(
    "mutate",
    [
        _serve_config(lambda a: a.update(import_path="raylake.serve.app:nope")),
        _serve_config(lambda a: a["args"]["config"]["model_server"].update(arms={
            "control": {"model": "delay_model:champion"}})),
        _serve_config(lambda a: a["args"]["config"]["model_server"].update(replicas=2)),
        _serve_config(lambda a: a["deployments"][0]["autoscaling_config"].update(
            min_replicas=30)),
        lambda s: s["spec"].update(serveConfig=s["spec"].pop("serveConfigV2")),
        lambda s: s["spec"]["rayClusterConfig"].pop("authOptions"),
    ],
    ids=["import-path", "unpinned-arm", "unknown-key", "min-over-max", "old-field", "no-auth"],
)
def test_rayservice_checker_catches_broken_copies(rayservice, mutate):
    service = copy.deepcopy(rayservice)
    mutate(service)
    with pytest.raises(Exception):  # noqa: B017 - assertion, schema and config errors alike
        check_rayservice(service)


def _gpu_group(spec):
    return next(g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu")


def _cpu_group(spec):
    return next(g for g in spec["workerGroupSpecs"] if g["groupName"] == "cpu")


def _no_gpu_limit(spec):
    containers(_gpu_group(spec)["template"])[0]["resources"]["limits"].pop("nvidia.com/gpu")


def _cpu_image_on_gpu(spec):
    containers(_gpu_group(spec)["template"])[0]["image"] = CPU_IMAGE_K8S


def _literal_token(spec):
    env = containers(spec["headGroupSpec"]["template"])[0]["env"]
    for e in env:
        if e["name"] == "RAY_AUTH_TOKEN":
            e.pop("valueFrom")
            e["value"] = "0123456789abcdef0123456789abcdef"


def _no_memory(spec):
    containers(_cpu_group(spec)["template"])[0]["resources"]["requests"].pop("memory")


def _min_over_max(spec):
    _cpu_group(spec)["minReplicas"] = 20


def _typo_field(spec):
    spec["enableInTreeAutoScaling"] = spec.pop("enableInTreeAutoscaling")


def _no_auth_mode(spec):
    env = containers(_cpu_group(spec)["template"])[0]["env"]
    env[:] = [e for e in env if e["name"] != "RAY_AUTH_MODE"]


@pytest.mark.parametrize(
    "mutate",
    [_no_gpu_limit, _cpu_image_on_gpu, _literal_token, _no_memory, _min_over_max,
     _typo_field, _no_auth_mode],
)
def test_raycluster_checker_catches_broken_copies(raycluster, mutate):
    spec = copy.deepcopy(raycluster["spec"])
    mutate(spec)
    with pytest.raises(AssertionError):
        check_cluster_spec(spec, want_gpu=True)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s.update(entrypoint="python jobs/other.py dataset=nycflights13"),
        lambda s: s.update(shutdownAfterJobFinishes=False),
        lambda s: s.update(runtimeEnvYAML="pip:\n  - raylake\n  - torch==2.13.0\n"),
        lambda s: s.update(runtimeEnvYAML="working_dir: ftp://example.com/x.zip\npip: [torch]\n"),
        lambda s: s.update(submissionMode="K8sMode"),
        lambda s: s.update(clusterSelector={"ray.io/cluster": "raylake"}),
    ],
    ids=["entrypoint", "no-shutdown", "raylake-before-torch", "bad-working_dir",
         "submission-mode", "selector-and-spec"],
)
def test_rayjob_checker_catches_broken_copies(rayjob, mutate):
    job = copy.deepcopy(rayjob)
    mutate(job["spec"])
    with pytest.raises((AssertionError, ValueError, TypeError)):
        check_rayjob(job)


# ------------------------------------------------------------------- secrets --

SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|ACCESS_KEY|CREDENTIAL|API_KEY)", re.I)
SECRET_TEXT = [
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"aws_secret_access_key\s*[:=]\s*\S", re.I),
    re.compile(r"AWS_SECRET_ACCESS_KEY\s*[:=]\s*['\"]?[A-Za-z0-9/+]{40}"),
    re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"),  # bare 40-char secret key
    re.compile(r"\b[0-9a-f]{32,}\b"),  # Ray token / hex secret
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
]


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def literal_secrets(text: str, docs: list[Any]) -> list[str]:
    found = [m.group(0) for rx in SECRET_TEXT for m in rx.finditer(text)]
    for doc in docs:
        for node in walk(doc):
            if not isinstance(node, dict):
                continue
            if node.get("kind") == "Secret" and (node.get("data") or node.get("stringData")):
                found.append(f"Secret {node.get('metadata', {}).get('name')} with data")
            # Kubernetes env entries: {name: ..., value: ...}
            if isinstance(node.get("name"), str) and "value" in node \
                    and SECRET_NAME.search(node["name"]):
                found.append(f"env {node['name']} has a literal value")
            # Ray runtime_env / storage options: {SOME_TOKEN: "..."}
            # (a file path or a $VARIABLE is a reference, not a secret)
            for key, value in node.items():
                if isinstance(key, str) and SECRET_NAME.search(key) and isinstance(value, str) \
                        and key != "secretName" and not value.startswith(("~", "/", "$")):
                    found.append(f"{key}: literal value")
    return found


def config_texts() -> list[tuple[Path, str, list[Any]]]:
    out = []
    for path in (AWS_CONFIG, RAYCLUSTER, RAYJOB, RAYSERVICE):
        text = path.read_text()
        docs = list(yaml.safe_load_all(text))
        for doc in docs:
            for node in walk(doc):
                for key in ("runtimeEnvYAML", "serveConfigV2"):
                    if isinstance(node, dict) and isinstance(node.get(key), str):
                        docs.append(yaml.safe_load(node[key]))
        out.append((path, text, docs))
    return out


@pytest.mark.parametrize(
    "path, text, docs", config_texts(),
    ids=[p.name for p in (AWS_CONFIG, RAYCLUSTER, RAYJOB, RAYSERVICE)]
)
def test_no_literal_secrets(path, text, docs):
    assert literal_secrets(text, docs) == [], f"{path} carries what looks like a secret"


def test_runbook_has_no_literal_secrets():
    text = RUNBOOK.read_text()  # docs/runbook.md must exist: the cluster docs link it
    assert "kubectl" in text and "ray up" in text, "the runbook covers KubeRay and ray up"
    assert literal_secrets(text, []) == []
    planted = text + "\nexport AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
    assert literal_secrets(planted, []) != [], "the scan reads the runbook's shell lines"


@pytest.mark.parametrize(
    "planted",
    [
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "3f0a1c9e5b7d2a4e6c8f0b1d3e5a7c9e",
    ],
)
def test_secret_scan_catches_planted_literals(planted):
    text = RAYCLUSTER.read_text() + f"\n# {planted}\n"
    assert literal_secrets(text, []) != []


def test_secret_scan_catches_literal_env(raycluster):
    doc = copy.deepcopy(raycluster)
    env = containers(doc["spec"]["headGroupSpec"]["template"])[0]["env"]
    env.append({"name": "AWS_SECRET_ACCESS_KEY", "value": "not-a-real-key"})
    assert literal_secrets("", [doc]) == ["env AWS_SECRET_ACCESS_KEY has a literal value"]


def test_secret_scan_catches_literal_runtime_env_var(rayjob):
    runtime_env = yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])
    runtime_env["env_vars"]["AWS_SESSION_TOKEN"] = "FwoGZXIvYXdzEXAMPLE"
    assert literal_secrets("", [runtime_env]) == ["AWS_SESSION_TOKEN: literal value"]


# ---------------------------------------------------------------- job scripts --


def referenced_job_scripts() -> dict[str, list[str]]:
    refs: dict[str, list[str]] = {}
    for path in (RAYJOB, RAYCLUSTER, AWS_CONFIG, RUNBOOK):
        for script in JOB_SCRIPT.findall(path.read_text()):
            refs.setdefault(script, []).append(path.relative_to(REPO).as_posix())
    return refs


def test_entrypoint_scripts_exist():
    refs = referenced_job_scripts()
    assert "jobs/ingest.py" in refs, "the RayJob must run jobs/ingest.py"
    assert "docs/runbook.md" in refs["jobs/ingest.py"], "the runbook shows the ingest job"
    missing = {s: where for s, where in refs.items() if not (REPO / s).is_file()}
    assert not missing, f"referenced but not in the repo: {missing}"


def test_the_dockerfile_builds_both_variants_on_rays_image():
    """cluster/docker/Dockerfile: FROM the pinned Ray's image in the variant asked for,
    torch before raylake (the CPU build for cpu), raylake from the tree; its build lines
    name the tags the RayService runs. (No docker here: the file is checked, not built.)"""
    text = DOCKERFILE.read_text()
    assert f"ARG RAY_VERSION={RAY_VERSION}" in text
    assert "FROM rayproject/ray:${RAY_VERSION}-py311-${VARIANT}" in text
    for variant in ("cpu", "gpu"):  # both bases are images Ray publishes
        assert f"rayproject/ray:{RAY_VERSION}-py311-{variant}" in (CPU_IMAGE_DOCKER, GPU_IMAGE)
    torch_at, raylake_at = text.index('"torch==${TORCH_VERSION}+cpu"'), text.index(
        "pip install --no-cache-dir /opt/raylake")
    assert torch_at < raylake_at and "COPY --chown=ray:users src /opt/raylake/src" in text
    for tag in (RAYLAKE_CPU_IMAGE, RAYLAKE_GPU_IMAGE):
        assert f"-t {tag} ." in text
    assert RAYLAKE_CPU_IMAGE in RAYSERVICE.read_text()
