"""Offline checks of everything in cluster/: the cluster-launcher YAMLs, the KubeRay manifests, the Dockerfile.

No cloud, no Kubernetes and no Ray cluster: the launcher YAMLs go through the same preparation and validation
``ray up`` runs before its first cloud call (with sockets and the cloud SDKs blocked, to prove it), the RayCluster
specs through the translation the KubeRay autoscaler applies to them, and every file through a scan for open
binds, disabled auth and anything that looks like a credential. Each failure names the file and the line or the
field at fault. A YAML added to cluster/ is picked up by the globs.
"""

from __future__ import annotations

import copy
import re
import shlex
import socket
import sys
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from conftest import ROOT
from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr
from ray.autoscaler._private.util import validate_config
from ray.autoscaler.v2.instance_manager.config import AutoscalingConfig

from genlab import ray_compat

CLUSTER = ROOT / "cluster"
KUBERAY = CLUSTER / "kuberay"
SHARED = "/mnt/genlab"
PY_TAG = "py311"
"""constraints.txt is resolved on CPython 3.11 (the .venv), so every image must run Python 3.11."""
IMAGE = re.compile(r"rayproject/ray:(?P<ray>\d+\.\d+\.\d+)-(?P<py>py\d+)(?:-(?P<flavor>cpu|gpu|cu\d+))?$")
FAKE_PROVIDERS = {"fake_multinode", "fake_multinode_docker"}
"""Providers that start Ray nodes as local processes: no setup or start commands, nothing to install."""
RUNTIME_ENV_KEYS = {"working_dir", "py_modules", "excludes", "env_vars", "pip", "uv", "conda", "container",
                    "image_uri", "config"}
TOKEN_SECRET_KEY = "auth_token"
"""The Secret key KubeRay's authOptions.secretName reads (and the one the manifests reference)."""


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _load(path: Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def _yaml_files() -> list[Path]:
    return sorted(CLUSTER.glob("*.yaml")) + sorted(CLUSTER.glob("*.yml"))


def _launcher_files() -> list[Path]:
    """The cluster-launcher configs: every YAML directly in cluster/ with a ``provider`` section."""
    return [p for p in _yaml_files() if isinstance(_load(p), dict) and "provider" in _load(p)]


LAUNCHERS = _launcher_files()
DEPLOYABLE = [p for p in LAUNCHERS if _load(p)["provider"]["type"] not in FAKE_PROVIDERS]
WITH_NODE_TYPES = [p for p in LAUNCHERS if "available_node_types" in _load(p)]
KUBERAY_FILES = sorted(KUBERAY.glob("*.yaml"))
ALL_FILES = sorted(p for p in CLUSTER.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _ids(paths: list[Path]) -> list[str]:
    return [_rel(p) for p in paths]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network, no cloud credentials, no cloud SDKs: validation must not need any of them."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"config validation tried to use the network: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for mod in ("boto3", "botocore", "googleapiclient", "google.cloud", "google.auth", "kubernetes"):
        monkeypatch.setitem(sys.modules, mod, None)  # importing it now raises ImportError
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "GOOGLE_APPLICATION_CREDENTIALS", "KUBECONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws, ~/.config/gcloud, ~/.kube, ~/.ray
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "none"))


def validate_launcher_config(raw: dict) -> dict:
    """Validate a cluster-launcher config the way Ray does (``prepare_config`` then ``validate_config``; a
    fake_multinode config as written): genlab's own reading, ``ray_compat.launcher_config``, which ``genlab validate
    --cluster`` uses too."""
    return ray_compat.launcher_config(raw)


def _prepared(path: Path) -> dict:
    return validate_launcher_config(_load(path))


# --------------------------------------------------------------------------------------------------------------
# Cluster-launcher YAMLs


def test_every_yaml_in_cluster_is_a_launcher_config_or_a_runtime_env():
    """A new YAML must not slip past the launcher checks because it lacks a provider section by mistake."""
    assert LAUNCHERS, "no cluster-launcher YAML (with a provider section) found in cluster/"
    unknown = []
    for path in _yaml_files():
        doc = _load(path)
        if not isinstance(doc, dict):
            unknown.append(f"{_rel(path)}: not a mapping")
        elif "provider" not in doc and not set(doc) <= RUNTIME_ENV_KEYS:
            unknown.append(f"{_rel(path)}: neither a launcher config (no provider) nor a runtime env "
                           f"(keys {sorted(set(doc) - RUNTIME_ENV_KEYS)})")
    assert not unknown, "\n".join(unknown)


@pytest.mark.parametrize("path", LAUNCHERS, ids=_ids(LAUNCHERS))
def test_launcher_config_validates_offline_with_rays_own_checks(path, offline):
    cfg = _prepared(path)
    assert cfg["head_node_type"] in cfg["available_node_types"], _rel(path)


@pytest.mark.parametrize("path", WITH_NODE_TYPES, ids=_ids(WITH_NODE_TYPES))
@pytest.mark.parametrize(
    ("break_it", "named"),
    [
        (lambda c: c.__setitem__("max_workers", "two"), "two"),
        (lambda c: c.__setitem__("head_node_type", "no_such_type"), "head_node_type"),
        (lambda c: c["available_node_types"][next(iter(c["available_node_types"]))].__setitem__("resource", {}),
         "resource"),
    ],
    ids=["max_workers-not-int", "head-type-unknown", "node-type-typo"],
)
def test_a_broken_launcher_config_is_rejected_naming_the_field(path, break_it, named, offline):
    raw = _load(path)
    break_it(raw)
    with pytest.raises((jsonschema.ValidationError, ValueError)) as err:
        validate_launcher_config(raw)
    assert named in str(err.value), f"{_rel(path)}: the error does not name {named!r}: {err.value}"


@pytest.mark.parametrize("path", LAUNCHERS, ids=_ids(LAUNCHERS))
def test_idle_timeout_is_set(path):
    raw = _load(path)
    assert isinstance(raw.get("idle_timeout_minutes"), (int, float)) and raw["idle_timeout_minutes"] > 0, (
        f"{_rel(path)}: idle_timeout_minutes must be set (> 0) so idle workers go away")


@pytest.mark.parametrize("path", DEPLOYABLE, ids=_ids(DEPLOYABLE))
def test_worker_types_are_gpu_and_scale_from_zero_head_has_no_gpu(path, offline):
    raw, cfg = _load(path), _prepared(path)
    types, head = cfg["available_node_types"], cfg["head_node_type"]
    if raw["provider"]["type"] == "local":
        # On-prem: one node type for all machines; Ray detects each machine's GPUs. The head offers none.
        head_start = " ".join(cfg["head_start_ray_commands"])
        assert "--num-gpus=0" in head_start, f"{_rel(path)}: the head's `ray start` must pass --num-gpus=0"
        return
    assert "max_workers" in raw, f"{_rel(path)}: set the cluster's max_workers"
    assert types[head]["resources"].get("GPU", 0) == 0, f"{_rel(path)}: head type {head!r} must have no GPU"
    workers = {name: t for name, t in types.items() if name != head}
    gpu_types = {name: t for name, t in workers.items() if t["resources"].get("GPU", 0) >= 1}
    assert gpu_types, f"{_rel(path)}: no worker type declares resources.GPU (the launcher cannot detect it offline)"
    for name, t in workers.items():
        assert t["resources"].get("CPU", 0) >= 1, f"{_rel(path)}: worker type {name!r}: set resources.CPU"
    for name, t in gpu_types.items():
        assert t["min_workers"] == 0, f"{_rel(path)}: GPU type {name!r}: min_workers must be 0 (scale from zero)"
        assert t["max_workers"] >= 1, f"{_rel(path)}: GPU type {name!r}: max_workers must be >= 1"


def _gitignored(name: str) -> bool:
    patterns = [ln.strip().rstrip("/") for ln in (ROOT / ".gitignore").read_text().splitlines()]
    return name in patterns


@pytest.mark.parametrize("path", DEPLOYABLE, ids=_ids(DEPLOYABLE))
def test_every_node_installs_genlab_from_the_synced_tree_with_constraints(path, offline):
    cfg = _prepared(path)
    assert cfg["file_mounts"].get("~/genlab") == ".", f"{_rel(path)}: file_mounts must sync the repo root to ~/genlab"
    filters, excludes = cfg.get("rsync_filter", []), cfg.get("rsync_exclude", [])
    for name in (".venv", "results", "mlflow.db", "mlartifacts", "data", ".whl"):
        covered = name in excludes or (".gitignore" in filters and _gitignored(name))
        assert covered, f"{_rel(path)}: {name} would be synced to the nodes (rsync_exclude / rsync_filter)"
    assert ".git" in excludes, f"{_rel(path)}: add .git to rsync_exclude"
    install = re.compile(r"pip install\b.*-c ~/genlab/constraints\.txt\b.*(-e )?~/genlab(\s|$)")
    per_node = {"head": cfg["head_setup_commands"]}
    for name, t in cfg["available_node_types"].items():
        if name != cfg["head_node_type"]:
            per_node[name] = t.get("worker_setup_commands", cfg["worker_setup_commands"])
    for node, commands in per_node.items():
        assert any(install.search(c) for c in commands), (
            f"{_rel(path)}: node type {node!r} does not run `pip install -c ~/genlab/constraints.txt -e ~/genlab` "
            f"(its setup commands: {commands})")
    assert (ROOT / "constraints.txt").is_file()


def _ray_start_commands(cfg: dict) -> list[str]:
    return [c for c in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"] if "ray start" in c]


@pytest.mark.parametrize("path", LAUNCHERS, ids=_ids(LAUNCHERS))
def test_every_ray_start_runs_with_token_auth(path, offline):
    cfg = _prepared(path)
    for cmd in _ray_start_commands(cfg):
        before = cmd[: cmd.index("ray start")]
        assert "RAY_AUTH_MODE=token" in before, f"{_rel(path)}: `ray start` without RAY_AUTH_MODE=token: {cmd}"
    if cfg["provider"]["type"] not in FAKE_PROVIDERS:
        assert any("--head" in c for c in _ray_start_commands(cfg)), f"{_rel(path)}: no `ray start --head`"
        assert any("--address" in c for c in cfg["worker_start_ray_commands"]), f"{_rel(path)}: no worker start"
        assert cfg["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token", (
            f"{_rel(path)}: the token reaches the nodes as the user's own file: "
            "file_mounts['~/.ray/auth_token'] = '~/.ray/auth_token'")


@pytest.mark.parametrize("path", DEPLOYABLE, ids=_ids(DEPLOYABLE))
def test_head_starts_mlflow_then_ray_with_tracking_storage_and_a_loopback_dashboard(path, offline):
    cmds = _prepared(path)["head_start_ray_commands"]
    where = f"{_rel(path)}: head_start_ray_commands"
    i_stop = next((i for i, c in enumerate(cmds) if c.strip().startswith("ray stop")), None)
    i_mlflow = next((i for i, c in enumerate(cmds) if "cluster/start_mlflow.sh" in c), None)
    i_start = next((i for i, c in enumerate(cmds) if "ray start" in c and "--head" in c), None)
    assert None not in (i_stop, i_mlflow, i_start) and i_stop < i_mlflow < i_start, (
        f"{where}: expected `ray stop`, then start_mlflow.sh, then `ray start --head`; got {cmds}")
    start = cmds[i_start]
    for needed in ("MLFLOW_TRACKING_URI=http://", f"GENLAB_STORAGE={SHARED}/", "--dashboard-host=127.0.0.1",
                   "--autoscaling-config=~/ray_bootstrap_config.yaml"):
        assert needed in start, f"{where}: the `ray start --head` command lacks {needed!r}: {start}"
    assert (CLUSTER / "start_mlflow.sh").is_file()


@pytest.mark.parametrize("path", DEPLOYABLE, ids=_ids(DEPLOYABLE))
def test_every_node_mounts_the_shared_results_folder(path, offline):
    cfg = _prepared(path)
    inits = {"head": cfg["initialization_commands"]}
    for name, t in cfg["available_node_types"].items():
        if name != cfg["head_node_type"]:
            inits[name] = t.get("initialization_commands", cfg["initialization_commands"])
    for node, commands in inits.items():
        assert any("mount" in c and SHARED in c for c in commands), (
            f"{_rel(path)}: node type {node!r} does not mount the shared folder {SHARED} (initialization_commands)")
    if cfg.get("docker", {}).get("container_name"):
        opts = " ".join(cfg["docker"].get("run_options", []))
        assert f"-v {SHARED}:{SHARED}" in opts, f"{_rel(path)}: docker.run_options must bind-mount {SHARED}"


def _images(cfg: dict) -> dict[str, str]:
    docker = cfg.get("docker", {})
    images = {k: docker[k] for k in ("image", "head_image", "worker_image") if docker.get(k)}
    for name, t in cfg.get("available_node_types", {}).items():
        if t.get("docker", {}).get("worker_image"):
            images[f"available_node_types.{name}.docker.worker_image"] = t["docker"]["worker_image"]
    return images


def _check_image(image: str, where: str) -> re.Match:
    m = IMAGE.match(image)
    assert m, f"{where}: {image!r} is not a rayproject/ray:<version>-<python>[-gpu] image"
    assert m["ray"] == ray.__version__, f"{where}: {image!r} runs Ray {m['ray']}, genlab pins {ray.__version__}"
    assert m["py"] == PY_TAG, f"{where}: {image!r} runs {m['py']}, constraints.txt is resolved for {PY_TAG}"
    return m


@pytest.mark.parametrize("path", DEPLOYABLE, ids=_ids(DEPLOYABLE))
def test_docker_images_match_the_installed_ray_and_python(path, offline):
    cfg = _prepared(path)
    images = _images(cfg)
    assert images, f"{_rel(path)}: no docker image configured"
    for key, image in images.items():
        _check_image(image, f"{_rel(path)}: docker.{key}")
    docker = cfg["docker"]
    head = docker.get("head_image", docker.get("image"))
    worker = docker.get("worker_image", docker.get("image"))
    worker_flavor, head_flavor = IMAGE.match(worker)["flavor"] or "cpu", IMAGE.match(head)["flavor"] or "cpu"
    assert worker_flavor != "cpu", f"{_rel(path)}: the GPU workers' image {worker!r} has no CUDA (-gpu)"
    assert head_flavor == "cpu", f"{_rel(path)}: the CPU head's image {head!r} need not carry CUDA"
    gpu_opts = " ".join(docker.get("run_options", []) + docker.get("worker_run_options", []))
    assert "--gpus" in gpu_opts, f"{_rel(path)}: docker worker_run_options must pass --gpus to the GPU workers"


def test_dockerfile_builds_genlab_on_the_matching_ray_image():
    text = (CLUSTER / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(froms) == 1, f"cluster/Dockerfile: expected one FROM, got {froms}"
    m = _check_image(froms[0], "cluster/Dockerfile: FROM")
    assert m["flavor"] == "gpu", f"cluster/Dockerfile: FROM {froms[0]} has no CUDA"
    assert re.search(r"^RUN .*pip install .*-c constraints\.txt \.", text, re.M), (
        "cluster/Dockerfile: genlab must be installed with `pip install -c constraints.txt .`")
    for tool in ("curl", "socat"):  # start_mlflow.sh's health check; the head's loopback relay to MLflow
        assert re.search(rf"apt-get install .*\b{tool}\b", text), f"cluster/Dockerfile: install {tool}"


# --------------------------------------------------------------------------------------------------------------
# KubeRay manifests


def _kuberay_docs() -> list[tuple[Path, dict]]:
    docs = []
    for path in KUBERAY_FILES:
        with open(path) as f:
            docs += [(path, d) for d in yaml.safe_load_all(f) if d is not None]
    return docs


def _of_kind(kind: str) -> list[tuple[Path, dict]]:
    return [(p, d) for p, d in _kuberay_docs() if d.get("kind") == kind]


def _cluster_specs() -> list[tuple[str, dict, str]]:
    """(where, RayCluster spec, name) of every RayCluster and of every RayJob's rayClusterSpec."""
    specs = [(f"{_rel(p)}: RayCluster {d['metadata']['name']}", d["spec"], d["metadata"]["name"])
             for p, d in _of_kind("RayCluster")]
    specs += [(f"{_rel(p)}: RayJob {d['metadata']['name']}.spec.rayClusterSpec", d["spec"]["rayClusterSpec"],
               d["metadata"]["name"]) for p, d in _of_kind("RayJob") if "rayClusterSpec" in d["spec"]]
    return specs


CLUSTER_SPECS = _cluster_specs()
CLUSTER_SPEC_IDS = [w.split(": ", 1)[1].replace(" ", ":") for w, _, _ in CLUSTER_SPECS]


def _dockerfile_workdir() -> str:
    return re.findall(r"^WORKDIR\s+(\S+)", (CLUSTER / "Dockerfile").read_text(), re.M)[-1]


def test_kuberay_manifests_parse_and_name_their_kind():
    assert KUBERAY_FILES, "no KubeRay manifests in cluster/kuberay/"
    for path, doc in _kuberay_docs():
        for field in ("apiVersion", "kind"):
            assert doc.get(field), f"{_rel(path)}: a document without {field}"
        assert doc.get("metadata", {}).get("name"), f"{_rel(path)}: {doc['kind']} without metadata.name"
        if doc["kind"] in ("RayCluster", "RayJob", "RayService"):
            assert doc["apiVersion"] == "ray.io/v1", f"{_rel(path)}: {doc['kind']} must be apiVersion ray.io/v1"
    kinds = {d["kind"] for _, d in _kuberay_docs()}
    assert {"RayCluster", "RayJob", "PersistentVolumeClaim", "Service"} <= kinds, kinds


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _check_token_env(env: dict[str, dict], where: str, secret: str) -> None:
    mode = env.get("RAY_AUTH_MODE", {})
    assert mode.get("value") == "token", f"{where}: env RAY_AUTH_MODE must be 'token', got {mode}"
    token = env.get("RAY_AUTH_TOKEN", {})
    assert "value" not in token, f"{where}: RAY_AUTH_TOKEN has a literal value: it must come from the Secret"
    ref = token.get("valueFrom", {}).get("secretKeyRef", {})
    assert ref == {"name": secret, "key": TOKEN_SECRET_KEY}, (
        f"{where}: RAY_AUTH_TOKEN must come from secretKeyRef {{name: {secret}, key: {TOKEN_SECRET_KEY}}}, got {token}")


@pytest.mark.parametrize(("where", "spec", "name"), CLUSTER_SPECS, ids=CLUSTER_SPEC_IDS)
def test_raycluster_spec_has_what_kuberay_requires(where, spec, name):
    assert spec.get("rayVersion") == ray.__version__, f"{where}: rayVersion must be {ray.__version__!r}"
    assert spec.get("enableInTreeAutoscaling") is True, f"{where}: enableInTreeAutoscaling must be true"
    opts = spec.get("autoscalerOptions", {})
    for field in ("idleTimeoutSeconds", "upscalingMode"):
        assert field in opts, f"{where}: autoscalerOptions.{field} missing"
    head = spec["headGroupSpec"]
    assert isinstance(head.get("rayStartParams"), dict), f"{where}: headGroupSpec.rayStartParams missing"
    head_c = head["template"]["spec"]["containers"][0]
    assert head_c.get("name") and head_c.get("image"), f"{where}: the head's containers[0] needs name and image"
    assert "nvidia.com/gpu" not in head_c.get("resources", {}).get("limits", {}), f"{where}: the head asks for a GPU"
    assert spec.get("workerGroupSpecs"), f"{where}: no workerGroupSpecs"
    for g in spec["workerGroupSpecs"]:
        gw = f"{where}: workerGroupSpecs[{g.get('groupName')}]"
        assert g.get("groupName"), f"{where}: a worker group without groupName"
        assert isinstance(g.get("rayStartParams"), dict), f"{gw}: rayStartParams missing"
        lo, hi = g.get("minReplicas"), g.get("maxReplicas")
        n = g.get("replicas", lo)
        assert isinstance(lo, int) and isinstance(hi, int) and lo <= n <= hi, (
            f"{gw}: need minReplicas <= replicas <= maxReplicas, got {lo}, {n}, {hi}")
        assert lo == 0, f"{gw}: minReplicas must be 0 (GPU pods only while trials need them)"
        c = g["template"]["spec"]["containers"][0]
        assert c.get("name") and c.get("image"), f"{gw}: containers[0] needs name and image"
        gpus = c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
        assert gpus is not None and int(gpus) >= 1, f"{gw}: containers[0] needs resources.limits nvidia.com/gpu"


@pytest.mark.parametrize(("where", "spec", "name"), CLUSTER_SPECS, ids=CLUSTER_SPEC_IDS)
def test_raycluster_spec_through_the_kuberay_autoscaler_translation(where, spec, name, offline):
    """Ray's KubeRay autoscaler (v1 and v2) turns the RayCluster CR into an autoscaling config with
    ``_derive_autoscaling_config_from_ray_cr`` and validates it with ``validate_config`` (v2 then wraps it in
    ``AutoscalingConfig``); here it gets the CR as the API server would return it (a namespace filled in), with
    no Kubernetes API involved. The pod templates themselves (images, env, volumes) are Kubernetes' and
    KubeRay's to check: the other tests cover the fields KubeRay requires."""
    cr = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": name, "namespace": "default"},
          "spec": copy.deepcopy(spec)}
    cfg = _derive_autoscaling_config_from_ray_cr(cr)
    validate_config(cfg)
    v2 = AutoscalingConfig(copy.deepcopy(cfg), skip_content_hash=True)  # what autoscaler v2 (Ray's default) reads
    assert v2.get_head_node_type() == "headgroup"
    assert set(v2.get_node_type_configs()) == {"headgroup", *(g["groupName"] for g in spec["workerGroupSpecs"])}
    types = cfg["available_node_types"]
    assert types["headgroup"]["resources"].get("GPU", 0) == 0, f"{where}: the head offers a GPU"
    assert types["headgroup"]["resources"]["CPU"] == 0, f"{where}: the head offers CPUs to trials (num-cpus 0)"
    for g in spec["workerGroupSpecs"]:
        t = types[g["groupName"]]
        assert t["resources"].get("GPU", 0) >= 1 and t["resources"]["CPU"] >= 1, (
            f"{where}: worker group {g['groupName']}: the autoscaler sees {t['resources']}")
        assert t["min_workers"] == 0, f"{where}: worker group {g['groupName']} does not scale from zero"
    assert cfg["idle_timeout_minutes"] * 60 == spec["autoscalerOptions"]["idleTimeoutSeconds"]


@pytest.mark.parametrize(("where", "spec", "name"), CLUSTER_SPECS, ids=CLUSTER_SPEC_IDS)
def test_raycluster_spec_keeps_token_auth_and_the_shared_volume(where, spec, name):
    auth = spec.get("authOptions", {})
    assert auth.get("mode") == "token", f"{where}: authOptions.mode must be token"
    secret = auth.get("secretName")
    assert secret, f"{where}: authOptions.secretName names the user's token Secret"
    _check_token_env(_env(spec["autoscalerOptions"]), f"{where}: autoscalerOptions", secret)
    groups = [("headGroupSpec", spec["headGroupSpec"])]
    groups += [(f"workerGroupSpecs[{g['groupName']}]", g) for g in spec["workerGroupSpecs"]]
    claims = {pvc["metadata"]["name"]: pvc for _, pvc in _of_kind("PersistentVolumeClaim")}
    for label, g in groups:
        pod = g["template"]["spec"]
        c = pod["containers"][0]
        _check_token_env(_env(c), f"{where}: {label}.containers[0]", secret)
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        assert SHARED in mounts, f"{where}: {label} does not mount the shared volume at {SHARED}"
        volume = next(v for v in pod["volumes"] if v["name"] == mounts[SHARED])
        claim = volume.get("persistentVolumeClaim", {}).get("claimName")
        assert claim in claims, f"{where}: {label} mounts {SHARED} from {claim!r}, not a PVC in cluster/kuberay/"
        assert "ReadWriteMany" in claims[claim]["spec"]["accessModes"], f"PVC {claim} must be ReadWriteMany"


def test_raycluster_head_runs_mlflow_on_the_pod_ip_behind_a_clusterip_service():
    clusters = _of_kind("RayCluster")
    assert clusters, "no RayCluster in cluster/kuberay/"
    services = {s["metadata"]["name"]: s for _, s in _of_kind("Service")}
    for path, rc in clusters:
        head = rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
        env = _env(head)
        where = f"{_rel(path)}: RayCluster {rc['metadata']['name']} headGroupSpec.containers[0]"
        assert env.get("POD_IP", {}).get("valueFrom") == {"fieldRef": {"fieldPath": "status.podIP"}}, (
            f"{where}: env POD_IP must come from the downward API (status.podIP)")
        assert env.get("GENLAB_MLFLOW_HOST", {}).get("value") == "$(POD_IP)", f"{where}: MLflow must bind the pod IP"
        command = " ".join(head.get("command", []) + head.get("args", []))
        script = f"{_dockerfile_workdir()}/cluster/start_mlflow.sh"
        assert script in command, f"{where}: the head command must run {script} (the image's copy)"
        assert env.get("GENLAB_STORAGE", {}).get("value", "").startswith(SHARED + "/"), f"{where}: GENLAB_STORAGE"
        uri = env.get("MLFLOW_TRACKING_URI", {}).get("value", "")
        service = re.match(r"http://([\w-]+):(\d+)$", uri)
        assert service and service[1] in services, f"{where}: MLFLOW_TRACKING_URI {uri!r} is not a Service here"
        svc = services[service[1]]
        head_pod = {"ray.io/cluster": rc["metadata"]["name"], "ray.io/node-type": "head"}
        assert svc["spec"].get("selector") == head_pod, f"Service {service[1]} must select {head_pod}"
        ports = [p["port"] for p in svc["spec"]["ports"]]
        assert int(service[2]) in ports, f"Service {service[1]}: no port {service[2]} (has {ports})"


def test_rayjob_runs_a_genlab_sweep_and_cleans_up():
    jobs = _of_kind("RayJob")
    assert jobs, "no RayJob in cluster/kuberay/"
    services = {s["metadata"]["name"] for _, s in _of_kind("Service")}
    for path, job in jobs:
        where, spec = f"{_rel(path)}: RayJob {job['metadata']['name']}", job["spec"]
        args = shlex.split(spec["entrypoint"])
        assert args[:3] == ["python", "-m", "genlab"] and args[3] in ("sweep", "train"), (
            f"{where}: the entrypoint must run `python -m genlab sweep|train`, got {spec['entrypoint']!r}")
        assert (ROOT / args[4]).is_file(), f"{where}: the entrypoint's spec {args[4]} is not in the repository"
        assert args[args.index("--storage") + 1].startswith(SHARED + "/"), f"{where}: --storage must be under {SHARED}"
        runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
        assert runtime_env.get("working_dir") == _dockerfile_workdir(), (
            f"{where}: runtimeEnvYAML working_dir must be the image's repository ({_dockerfile_workdir()})")
        uri = runtime_env["env_vars"]["MLFLOW_TRACKING_URI"]
        host = re.match(r"http://([\w-]+):\d+$", uri)
        assert host and host[1] in services, f"{where}: MLFLOW_TRACKING_URI {uri} is not a ClusterIP Service here"
        assert spec.get("shutdownAfterJobFinishes") is True, f"{where}: shutdownAfterJobFinishes must be true"
        assert isinstance(spec.get("ttlSecondsAfterFinished"), int) and spec["ttlSecondsAfterFinished"] > 0, where
        assert "rayClusterSpec" in spec or "clusterSelector" in spec, f"{where}: no cluster to run on"
        pod = spec["submitterPodTemplate"]["spec"]
        assert pod.get("restartPolicy") == "Never", f"{where}: the submitter pod's restartPolicy must be Never"
        secret = spec.get("rayClusterSpec", {}).get("authOptions", {}).get("secretName", "genlab-ray-token")
        _check_token_env(_env(pod["containers"][0]), f"{where}: submitterPodTemplate.containers[0]", secret)


# --------------------------------------------------------------------------------------------------------------
# Safety: every file under cluster/


CREDENTIALS = [
    (re.compile(r"AKIA[0-9A-Z]{16}"), "an AWS access key id"),
    (re.compile(r"(?i)aws_secret_access_key|aws_session_token"), "an AWS secret"),
    (re.compile(r"BEGIN [A-Z ]*PRIVATE KEY"), "a private key"),
    (re.compile(r"(?i)(?<![a-z_])private_key\"?\s*:"), "a service-account key's private_key"),
    (re.compile(r"(?i)client_secret"), "an OAuth client secret"),
    (re.compile(r"(?i)password\s*[:=]\s*[\"']?[^\s\"'$<{]"), "a password value"),
    (re.compile(r"RAY_AUTH_TOKEN\s*[=:]\s*[\"']?[A-Za-z0-9+/=_-]{20,}"), "a literal Ray token"),
    (re.compile(r"(?i)(secret|token|api[_-]?key)\s*[:=]\s*[\"']?[A-Fa-f0-9]{32,}"), "a hex token value"),
    (re.compile(r"[a-z][a-z0-9+.-]*://[^\s/:@$()]+:[^\s/@$()]+@"), "a password inside a URI"),
]
DISABLED_AUTH = re.compile(r"RAY_AUTH_MODE[^\n]{0,20}disabled")
ALL_INTERFACES = re.compile(r"0\.0\.0\.0|--host[= ]+::(\s|$)")
SSH_FROM_ANYWHERE = re.compile(r"CidrIp:\s*[\"']?0\.0\.0\.0/0")  # judged by test_no_open_ingress_but_ssh
DASHBOARD_HOST = re.compile(r"--dashboard-host[= ]+(\S+)")


def _allowed_all_interfaces(path: Path, line: str) -> bool:
    if SSH_FROM_ANYWHERE.search(line):
        return True
    # start_mlflow.sh documents and implements its refusal to bind all interfaces.
    return path.name == "start_mlflow.sh" and (line.lstrip().startswith("#") or '== "0.0.0.0"' in line)


def _is_comment(path: Path, line: str) -> bool:
    return path.suffix in (".yaml", ".yml", ".sh", "") and line.lstrip().startswith("#")


def test_no_open_binds_disabled_auth_or_credentials_in_any_cluster_file():
    problems = []
    for path in ALL_FILES:
        text = path.read_text(errors="replace")
        for no, line in enumerate(text.splitlines(), 1):
            at = f"{_rel(path)}:{no}: {line.strip()}"
            if ALL_INTERFACES.search(line) and not _allowed_all_interfaces(path, line):
                problems.append(f"{at}\n    binds (or names) all interfaces")
            host = DASHBOARD_HOST.search(line)
            if host and host[1].strip("'\"`;") not in ("127.0.0.1", "localhost"):
                problems.append(f"{at}\n    the dashboard must listen on 127.0.0.1")
            if DISABLED_AUTH.search(line):
                problems.append(f"{at}\n    disables Ray's token auth")
            for pattern, what in CREDENTIALS:
                if pattern.search(line):
                    problems.append(f"{at}\n    looks like {what}")
            if path.parent == KUBERAY and not _is_comment(path, line) and re.search(r"LoadBalancer|NodePort", line):
                problems.append(f"{at}\n    publishes a service outside the cluster (ClusterIP only)")
    assert not problems, "\n".join(problems)


def _open_ingress(cfg: dict) -> list[str]:
    """Security-group rules of a launcher config that admit the whole internet on anything but SSH (22)."""
    bad = []
    for rule in cfg.get("provider", {}).get("security_group", {}).get("IpPermissions", []):
        anywhere = [r.get("CidrIp") for r in rule.get("IpRanges", [])] + [
            r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])]
        if {"0.0.0.0/0", "::/0"} & set(anywhere) and not (rule.get("FromPort") == rule.get("ToPort") == 22):
            bad.append(f"ports {rule.get('FromPort')}-{rule.get('ToPort')} open to {anywhere}")
    return bad


def test_no_open_ingress_but_ssh():
    for path in LAUNCHERS:
        assert not _open_ingress(_load(path)), f"{_rel(path)}: provider.security_group: {_open_ingress(_load(path))}"
    # The check itself: an open MLflow port is caught, SSH from anywhere is not.
    open_mlflow = {"provider": {"security_group": {"IpPermissions": [
        {"FromPort": 5000, "ToPort": 5000, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"FromPort": 22, "ToPort": 22, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]}}}
    assert _open_ingress(open_mlflow) == ["ports 5000-5000 open to ['0.0.0.0/0']"]


def test_kuberay_stays_inside_the_cluster_and_holds_no_secret_values():
    for path, doc in _kuberay_docs():
        where = f"{_rel(path)}: {doc['kind']} {doc['metadata']['name']}"
        assert doc["kind"] != "Secret", f"{where}: create Secrets with kubectl, never in a committed manifest"
        if doc["kind"] == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", f"{where}: Services must be ClusterIP"
        for spec in [s for w, s, _ in _cluster_specs() if w.startswith(_rel(path))]:
            head = spec["headGroupSpec"]
            assert head.get("serviceType", "ClusterIP") == "ClusterIP", f"{where}: headGroupSpec.serviceType"
            assert not head.get("enableIngress"), f"{where}: headGroupSpec.enableIngress publishes the dashboard"
            assert spec.get("authOptions", {}).get("mode") != "disabled", f"{where}: authOptions.mode disabled"
            for g in [head, *spec["workerGroupSpecs"]]:
                pod = g["template"]["spec"]
                assert not pod.get("hostNetwork"), f"{where}: hostNetwork exposes the pod's ports on the node"
                for c in pod["containers"]:
                    assert not any("hostPort" in p for p in c.get("ports", [])), f"{where}: hostPort in {c['name']}"


# --------------------------------------------------------------------------------------------------------------
# Specs against clusters: genlab validate SPEC --cluster FILE

CLUSTER_RUNS = {
    # spec -> the cluster files it is meant for (each must fit), and the node type a trial packs onto there
    "sweeps/gail/humanoid_cluster.yaml": {"cluster/aws-gpu.yaml": "1 x gpu_4x", "cluster/gcp-gpu.yaml": "1 x gpu_4x",
                                          "cluster/kuberay/raycluster.yaml": "6 x gpu-1x"},
    "sweeps/vime/halfcheetah_cluster.yaml": {"cluster/aws-gpu.yaml": "1 x gpu_4x", "cluster/gcp-gpu.yaml": "1 x gpu_4x",
                                             "cluster/kuberay/raycluster.yaml": "3 x gpu-1x",
                                             "cluster/kuberay/rayjob.yaml": "3 x gpu-1x"},
    "sweeps/improved_gan/cifar10_cluster.yaml": {"cluster/aws-gpu.yaml": "1 x gpu_4x",
                                                 "cluster/gcp-gpu.yaml": "1 x gpu_4x",
                                                 "cluster/kuberay/raycluster.yaml": "4 x gpu-1x",
                                                 "cluster/kuberay/rayjob.yaml": "4 x gpu-1x"},
}
CLUSTER_CASES = [(spec, cluster, packs) for spec, clusters in CLUSTER_RUNS.items()
                 for cluster, packs in clusters.items()]


def test_every_cluster_scale_spec_is_checked_here():
    shipped = {_rel(p) for p in (ROOT / "sweeps").rglob("*_cluster.yaml")}
    assert shipped == set(CLUSTER_RUNS), "a sweeps/<method>/*_cluster.yaml names the clusters it is meant for here"


@pytest.mark.parametrize(("spec", "cluster", "packs"), CLUSTER_CASES, ids=[f"{s}@{c}" for s, c, _ in CLUSTER_CASES])
def test_cluster_scale_spec_fits_the_clusters_it_is_meant_for(spec, cluster, packs, offline):
    from genlab import launch

    lines = launch.validate_on_cluster(ROOT / spec, ROOT / cluster)
    report = "\n".join(lines)
    assert f"all of it: {packs}" in report, report
    assert "fits" in report and "does not fit" not in report, report


TOO_BIG = [
    ("sweeps/gail/humanoid_cluster.yaml", "cluster/aws-gpu.yaml", ["rl.gpus_per_learner=8"],
     "rl.gpus_per_learner: the trial's process and its learner needs {CPU 1, GPU 8}, more GPU than any node type "
     "of {cluster} has; the largest, gpu_4x, has {CPU 48, GPU 4}"),
    ("sweeps/improved_gan/cifar10_cluster.yaml", "cluster/gcp-gpu.yaml", ["resources.cpus_per_worker=64"],
     "resources.cpus_per_worker: each Ray Train worker needs {CPU 64, GPU 1}, more CPU than any node type of "
     "{cluster} has; the largest, gpu_4x, has {CPU 48, GPU 4}"),
    ("sweeps/vime/halfcheetah_cluster.yaml", "cluster/kuberay/raycluster.yaml", ["rl.cpus_per_learner=8"],
     "rl.cpus_per_learner: each learner needs {CPU 8}, more CPU than any node type of {cluster} has; the largest, "
     "gpu-1x, has {CPU 7, GPU 1, memory 28 GiB}"),
    ("sweeps/gail/humanoid_cluster.yaml", "cluster/kuberay/rayjob.yaml", [],
     "rl.env_runners / rl.evaluation_runners: a trial's 38 bundles need {CPU 38, GPU 1} in all, more than {cluster} "
     "holds at its largest (up to 4 x gpu-1x"),
]


@pytest.mark.parametrize(("spec", "cluster", "overrides", "expected"), TOO_BIG,
                         ids=[f"{s}@{c}{o}" for s, c, o, _ in TOO_BIG])
def test_a_spec_too_big_for_a_cluster_is_refused_naming_the_field_and_the_largest_node_type(spec, cluster, overrides,
                                                                                             expected, offline):
    from genlab import launch
    from genlab.errors import SpecError

    with pytest.raises(SpecError) as e:
        launch.validate_on_cluster(ROOT / spec, ROOT / cluster, overrides)
    assert expected.replace("{cluster}", str(ROOT / cluster)) in str(e.value), str(e.value)


def test_validate_cluster_on_the_command_line_says_which_node_type(capsys, offline):
    from genlab.cli import main

    spec = "sweeps/improved_gan/cifar10_cluster.yaml"
    assert main(["validate", str(ROOT / spec), "--cluster", str(ROOT / "cluster/aws-gpu.yaml")]) == 0
    out = capsys.readouterr().out
    assert "4 x {CPU 4, GPU 1} Ray Train worker" in out
    assert "Ray Train worker {CPU 4, GPU 1}: fits gpu_1x (1 per node), gpu_4x (4 per node)" in out
    assert main(["validate", str(ROOT / spec), "--cluster", str(ROOT / "cluster/local-autoscaling.yaml")]) == 2
    assert "does not fit" in capsys.readouterr().err
    assert main(["validate", str(ROOT / spec), "--cluster", str(ROOT / "cluster/runtime_env.yaml")]) == 2
    assert "neither a Ray cluster-launcher config" in capsys.readouterr().err


def test_a_cluster_whose_machines_declare_nothing_is_said_to_be_unchecked(offline):
    from genlab import launch

    lines = launch.validate_on_cluster(ROOT / "sweeps/improved_gan/cifar10_cluster.yaml", ROOT / "cluster/onprem.yaml")
    assert "declare no resources" in lines[-1], lines
