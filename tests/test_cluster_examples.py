"""The cloud-cluster examples (examples/cluster/) and the manual's section on them, checked offline.

Neither file was run against a cloud or a Kubernetes cluster. What is checked here: the launcher
config passes Ray's own schema and the checks `ray up` makes before it contacts AWS; the RayJob has
the fields, required keys and types of KubeRay's ray.io/v1 API; the resources hold the trials the
command packs; no credential is written anywhere; and every `tunelab ...` command in the two files
and in the manual's section parses with tunelab's own parser and option checks, so a renamed flag,
method or command fails here. Nothing starts Ray or reaches a network.
"""
import copy
import json
import re
import shlex
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
import yaml

import ray.autoscaler
from ray.autoscaler._private.util import prepare_config, validate_config  # what `ray up` runs first

from tunelab.cli_parser import build_parser
from tunelab.core.errors import TunelabError
from tunelab.options import from_args
from tunelab.tune_options import TuneOptions, check_config_values

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = ROOT / "examples" / "cluster" / "ray-cluster.yaml"
RAYJOB = ROOT / "examples" / "cluster" / "kuberay-rayjob.yaml"
PAGE = ROOT / "docs" / "how-to" / "clusters-and-gpus.md"
SECTION = "## On a cloud cluster: Ray's cluster launcher and KubeRay"

SUBCOMMANDS = ("train", "tune", "resume", "report", "best", "reproduce", "compare", "pretrain")
# `tunelab SUBCOMMAND ...` up to the end of the line, a closing backtick, a shell separator or a comment
COMMAND = re.compile(r"(?<![\w/.-])tunelab[ \t]+(?:%s)(?![\w-])[^`\n;&|#]*" % "|".join(SUBCOMMANDS))

# KubeRay's ray.io/v1 API types (RayJobSpec, RayClusterSpec, HeadGroupSpec, WorkerGroupSpec): every field
# of each, and those declared without `omitempty`, which the CRD generated from them requires.
RAYJOB_SPEC_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata", "clusterSelector",
    "submitterConfig", "managedBy", "deletionStrategy", "entrypoint", "runtimeEnvYAML", "jobId", "submissionMode",
    "entrypointResources", "entrypointNumCpus", "entrypointNumGpus", "ttlSecondsAfterFinished",
    "shutdownAfterJobFinishes", "suspend", "schedule",
}
RAYCLUSTER_SPEC_FIELDS = {
    "suspend", "managedBy", "autoscalerOptions", "headServiceAnnotations", "enableInTreeAutoscaling",
    "gcsFaultToleranceOptions", "headGroupSpec", "rayVersion", "workerGroupSpecs",
}
HEAD_GROUP_FIELDS = {"template", "headService", "enableIngress", "rayStartParams", "serviceType"}
HEAD_GROUP_REQUIRED = {"template", "rayStartParams"}
WORKER_GROUP_FIELDS = {
    "suspend", "groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds", "rayStartParams",
    "template", "scaleStrategy", "numOfHosts",
}
WORKER_GROUP_REQUIRED = {"groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"}

AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
URI_SECRETS = {"access_key", "secret_key", "session_token"}


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _ray_pin() -> str:
    match = re.search(r"^ray==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert match, "constraints.txt pins no ray version"
    return match.group(1)


def _section() -> str:
    text = PAGE.read_text()
    assert SECTION in text, f"{PAGE.name} has no section {SECTION!r}"
    return re.split(r"\n## ", text.split(SECTION, 1)[1], maxsplit=1)[0]


def _strings(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return []


def _commands_in(text: str) -> list[str]:
    text = text.replace("\\\n", " ")  # shell line continuations
    return [" ".join(m.group(0).split()) for m in COMMAND.finditer(text)]


def _yaml_commands(path: Path) -> list[str]:
    """From the comments (usage lines, `#` dropped) and from every string value (an entrypoint)."""
    raw = path.read_text()
    comments = "\n".join(line.strip()[1:] for line in raw.splitlines() if line.strip().startswith("#"))
    return _commands_in(comments) + [c for s in _strings(yaml.safe_load(raw)) for c in _commands_in(s)]


def _doc_commands() -> list[str]:
    section = _section()
    code = re.findall(r"```[a-z]*\n(.*?)```", section, re.S)
    inline = [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", section, flags=re.S))]
    return [c for text in code + inline for c in _commands_in(text)]


def _parse(command: str):
    """The command as `tunelab` reads it: its parser, then (tune) the option checks made before any data loads."""
    argv = shlex.split(command)
    assert argv[0] == "tunelab", command
    try:
        args = build_parser().parse_args(argv[1:])
    except SystemExit as exc:
        pytest.fail(f"{command!r} is refused by tunelab's parser (exit {exc.code}); see stderr above")
    if args.command == "tune":
        try:
            check_config_values(from_args(TuneOptions, args))
        except TunelabError as exc:
            pytest.fail(f"{command!r} is refused by tunelab's option checks: {exc}")
    return args


def _tune(path: Path):
    tunes = [args for args in map(_parse, _yaml_commands(path)) if args.command == "tune"]
    assert len(tunes) == 1, f"{path.name}: expected one `tunelab tune` command, found {len(tunes)}"
    return tunes[0]


def _cpus(quantity) -> float:
    """A Kubernetes CPU quantity ("4", 4, "3500m") in cores."""
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


# ----------------------------------------------------------------------------- every tunelab command


COMMAND_SOURCES = {
    "ray-cluster.yaml": lambda: _yaml_commands(LAUNCHER),
    "kuberay-rayjob.yaml": lambda: _yaml_commands(RAYJOB),
    "manual section": _doc_commands,
}


@pytest.mark.parametrize("source", COMMAND_SOURCES)
def test_every_tunelab_command_parses_with_tunelabs_own_parser(source):
    commands = COMMAND_SOURCES[source]()
    assert commands, f"no `tunelab ...` command found in the {source}"
    for command in commands:
        args = _parse(command)
        # cluster commands name storage every node reaches, and no key in the URI
        uris = {"tune": lambda a: [a.storage], "resume": lambda a: [a.experiment], "best": lambda a: [a.experiment],
                "report": lambda a: a.experiments}.get(args.command, lambda a: [])(args)
        for uri in uris:
            parts = urlsplit(uri)
            assert parts.scheme in ("s3", "gs", "file"), f"{command!r}: {uri!r} is not storage every node reaches"
            assert "@" not in parts.netloc and not URI_SECRETS & set(parse_qs(parts.query)), f"{command!r}: a key in {uri!r}"


def test_the_command_finder_sees_commands_and_only_commands():
    text = ("ray job submit -- \\\n    tunelab tune arcface --gpus-per-trial 0.25  # GPU\n"
            "`tunelab report s3://b/runs/x --out r`, COPY tunelab tunelab, REGISTRY/tunelab:0.2.0, `tunelab`")
    assert _commands_in(text) == ["tunelab tune arcface --gpus-per-trial 0.25", "tunelab report s3://b/runs/x --out r"]
    with pytest.raises(pytest.fail.Exception):
        _parse("tunelab tune arcface --gpu-per-trial 0.25")  # a misspelled flag is caught
    with pytest.raises(pytest.fail.Exception):
        _parse("tunelab tune arcface --gpus-per-trial 1.5")  # so is a value the option checks refuse


def test_the_manual_section_reads_back_the_experiment_its_search_writes():
    parsed = [_parse(c) for c in _doc_commands()]
    assert {"tune", "report", "resume"} <= {a.command for a in parsed}
    written = {f"{a.storage.rstrip('/')}/{a.name}" for a in parsed if a.command == "tune"}
    read = [a.experiment for a in parsed if a.command == "resume"] + [e for a in parsed if a.command == "report" for e in a.experiments]
    assert read and set(read) <= written, f"read {read}, but the section's searches write {sorted(written)}"


def test_the_manual_section_names_the_example_files_and_builds_the_pinned_ray():
    section = _section()
    for path in (LAUNCHER, RAYJOB):
        name = str(path.relative_to(ROOT))
        assert f"`{name}`" in section and path.is_file(), name
    bases = re.findall(r"^FROM (\S+)$", section, re.M)
    assert bases == [f"rayproject/ray:{_ray_pin()}-py311-gpu"], bases


@pytest.mark.parametrize("path", [LAUNCHER, RAYJOB, PAGE], ids=lambda p: p.name)
def test_no_credential_is_written_down(path):
    text = _section() if path == PAGE else path.read_text()
    assert not AWS_KEY_ID.findall(text), "an AWS access key id"
    assert not AWS_SECRET.findall(text), "a 40-character secret-like token"
    assert not re.search(r"(?i)aws_secret_access_key\s*[:=]\s*['\"]?(?!\$)[A-Za-z0-9/+]{8,}", text), "a secret key value"


def test_the_credential_detectors_find_credentials():
    assert AWS_KEY_ID.findall("key AKIAIOSFODNN7EXAMPLE here")  # AWS's documented example key id
    assert AWS_SECRET.findall("secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY here")  # and secret


# ----------------------------------------------------------------------------- Ray's cluster launcher


def test_the_launcher_config_passes_rays_schema():
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    config = _load(LAUNCHER)
    jsonschema.validate(config, schema)
    broken = copy.deepcopy(config)
    broken["setup_command"] = broken.pop("setup_commands")  # a misspelled key is refused: the schema is strict
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_the_launcher_config_passes_what_ray_up_checks_before_it_reaches_aws():
    prepared = prepare_config(_load(LAUNCHER))  # merged with Ray's AWS defaults, as `ray up` does
    validate_config(prepared)
    assert prepared["head_node_type"] == "head"


def test_the_launcher_gpu_workers_hold_the_trials_the_command_packs():
    config, tune = _load(LAUNCHER), _tune(LAUNCHER)
    assert 0 < tune.gpus_per_trial < 1, "the example shows fractional GPU trials"
    gpu_types = {name: t for name, t in config["available_node_types"].items() if t["resources"].get("GPU", 0) >= 1}
    assert gpu_types, "no node type with a GPU"
    for name, node_type in gpu_types.items():
        assert name != config["head_node_type"]
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"] <= config["max_workers"], name
        trials = node_type["resources"]["GPU"] / tune.gpus_per_trial
        assert node_type["resources"]["CPU"] >= trials * tune.cpus_per_trial, (
            f"{name}: {node_type['resources']['CPU']} CPUs cannot run {trials:g} trials of {tune.cpus_per_trial:g} CPU")


def test_the_launcher_installs_tunelab_from_this_checkout_on_the_pinned_ray():
    config = _load(LAUNCHER)
    (remote, local), = config["file_mounts"].items()
    assert local == ".", "the checkout: `ray up` runs from the repository root"
    assert ".gitignore" in config["rsync_filter"], "the checkout would ship .venv/ and runs/"
    steps = config["setup_commands"]
    torch = [i for i, s in enumerate(steps) if re.search(r"pip install .*\btorch\b.*\btorchvision\b", s)]
    extra = [i for i, s in enumerate(steps) if "pip install" in s and "-e '.[cluster]'" in s]
    assert torch and extra and torch[0] < extra[0], "torch and torchvision together, then tunelab's cluster extra"
    assert all(steps[i].startswith(f"cd {remote} && ") for i in torch + extra), "installed from the mounted checkout"
    image = config["docker"]["image"]
    assert image == f"rayproject/ray:{_ray_pin()}-py311-gpu", image


# ----------------------------------------------------------------------------- KubeRay's RayJob


def _containers(job: dict) -> list[dict]:
    cluster = job["spec"]["rayClusterSpec"]
    templates = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster.get("workerGroupSpecs", [])]
    if "submitterPodTemplate" in job["spec"]:
        templates.append(job["spec"]["submitterPodTemplate"])
    return [c for t in templates for c in t["spec"]["containers"]]


def test_the_rayjob_has_the_fields_of_kuberays_api():
    job = _load(RAYJOB)
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", job["metadata"]["name"])
    spec = job["spec"]
    assert set(spec) <= RAYJOB_SPEC_FIELDS, set(spec) - RAYJOB_SPEC_FIELDS
    assert isinstance(spec["entrypoint"], str)
    assert spec["shutdownAfterJobFinishes"] is True
    assert type(spec["ttlSecondsAfterFinished"]) is int and spec["ttlSecondsAfterFinished"] >= 0
    cluster = spec["rayClusterSpec"]
    assert set(cluster) <= RAYCLUSTER_SPEC_FIELDS, set(cluster) - RAYCLUSTER_SPEC_FIELDS
    assert cluster["rayVersion"] == _ray_pin(), "rayVersion must be the image's Ray (constraints.txt)"
    head = cluster["headGroupSpec"]
    assert HEAD_GROUP_REQUIRED <= set(head) <= HEAD_GROUP_FIELDS, set(head)
    groups = cluster["workerGroupSpecs"]
    assert groups
    for group in groups:
        assert WORKER_GROUP_REQUIRED <= set(group) <= WORKER_GROUP_FIELDS, set(group)
        counts = [group["minReplicas"], group.get("replicas", group["minReplicas"]), group["maxReplicas"]]
        assert all(type(n) is int for n in counts) and 0 <= counts[0] <= counts[1] <= counts[2], counts
    for params in [head["rayStartParams"]] + [g["rayStartParams"] for g in groups]:
        assert all(isinstance(v, str) for v in params.values()), f"rayStartParams values are strings: {params}"
    for container in _containers(job):
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", container["name"]), container["name"]


def test_every_rayjob_image_is_pinned():
    images = [c["image"] for c in _containers(_load(RAYJOB))]
    assert images
    for image in images:
        match = re.fullmatch(r"[\w.\-/]+:([\w][\w.\-]{0,127})", image)
        assert match and match.group(1) != "latest", f"{image!r} has no pinned tag"


def test_the_rayjob_gpu_workers_hold_the_trials_the_entrypoint_packs():
    job, tune = _load(RAYJOB), _tune(RAYJOB)
    assert tune.gpus_per_trial == 0.25
    gpu_groups = 0
    for group in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]:
        pod = group["template"]["spec"]
        for container in pod["containers"]:
            resources = container.get("resources", {})
            gpus = resources.get("limits", {}).get("nvidia.com/gpu")
            if gpus is None:
                continue
            gpu_groups += 1
            assert type(gpus) is int and gpus >= 1, f"GPU limits are whole numbers: {gpus!r}"
            assert resources.get("requests", {}).get("nvidia.com/gpu", gpus) == gpus
            trials = gpus / tune.gpus_per_trial
            cpus = _cpus(resources["limits"]["cpu"])
            assert cpus >= trials * tune.cpus_per_trial, f"{cpus:g} CPUs cannot run {trials:g} trials of {tune.cpus_per_trial:g} CPU"
            assert pod.get("nodeSelector"), "a GPU group is placed on the GPU node pool"
            assert any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])), "and tolerates its taint"
    assert gpu_groups, "no worker group asks for a GPU"
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"]
    assert not any("nvidia.com/gpu" in c.get("resources", {}).get("limits", {}) for c in head)


def test_every_rayjob_pod_reads_its_s3_credentials_from_a_secret():
    for container in _containers(_load(RAYJOB)):
        env = {e["name"]: e for e in container.get("env", [])}
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert name in env, f"{container['name']}: no {name}"
            assert "value" not in env[name], f"{container['name']}: {name} written in the manifest"
            ref = env[name]["valueFrom"]["secretKeyRef"]
            assert ref["name"] and ref["key"] == name
