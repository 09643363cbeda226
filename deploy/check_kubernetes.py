"""`make lint`: deploy/kubernetes is valid for a Kubernetes version, as kustomize renders it.

    python deploy/check_kubernetes.py --kubernetes-version 1.30.0 [FOLDER]

kustomize itself is on neither PyPI nor npm, so this renders the part of kustomize that these
kustomizations use (`resources`, `labels`, `images`, `namespace`, JSON 6902 `patches` with a
`target`) and refuses any other field: a kustomization it cannot render fails here rather
than passing unread. Then, for the base and every overlay:

- every object is valid against that version's schemas (kubernetes-validate, strict: no
  field the API would drop);
- what the objects name resolves: ConfigMaps, Secrets (the one from *.example.yaml, which is
  made by hand), volumes, named ports, the selectors of Services and the budget, the
  autoscaler's target;
- the drain's numbers agree with FLOWPORT_SHUTDOWN_GRACE_S, and the ports and probes with
  the ConfigMap's settings.

Every YAML file under the folder is a kustomization, used by one, or an example (itself
checked against the schemas)."""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

HERE = Path(__file__).resolve().parent
KUSTOMIZATION = "kustomization.yaml"
FIELDS = {"apiVersion", "kind", "resources", "labels", "images", "namespace", "patches"}
# Seconds: the service's own stop after its drain (replica, connections), and Envoy's.
SERVICE_STOP_S = 10
ENVOY_STOP_S = 5

Object = dict[str, Any]


class Invalid(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kubernetes-version", required=True, help="e.g. 1.30.0")
    parser.add_argument("folder", nargs="?", type=Path, default=HERE / "kubernetes")
    args = parser.parse_args(argv)
    problems = check(args.folder, args.kubernetes_version)
    for problem in problems:
        print(f"deploy/kubernetes: {problem}", file=sys.stderr)
    if not problems:
        print(f"deploy/kubernetes: valid for Kubernetes {args.kubernetes_version}")
    return 1 if problems else 0


def check(folder: Path, version: str) -> list[str]:
    problems: list[str] = []
    used: set[Path] = set()
    kustomizations = sorted(folder.rglob(KUSTOMIZATION))
    if not kustomizations:
        return [f"no {KUSTOMIZATION} under {folder}"]
    examples = sorted(folder.rglob("*.example.yaml"))
    external = {
        (obj["kind"], obj["metadata"]["name"]) for path in examples for obj in _objects(path)
    }
    for kustomization in kustomizations:
        name = kustomization.parent.relative_to(folder).as_posix()
        where = "base" if name == "." else name
        try:
            objects = render(kustomization.parent, used)
        except (Invalid, OSError, yaml.YAMLError, KeyError, IndexError, TypeError) as error:
            problems.append(f"{where}: cannot render: {error}")
            continue
        problems += [f"{where}: {p}" for p in _validate(objects, version)]
        problems += [f"{where}: {p}" for p in references(objects, external)]
        problems += [f"{where}: {p}" for p in drain_and_ports(objects)]
    for path in examples:
        problems += [f"{path.name}: {p}" for p in _validate(_objects(path), version)]
    for path in sorted(folder.rglob("*.yaml")):
        if path.name != KUSTOMIZATION and path not in used and path not in examples:
            problems.append(f"{path.relative_to(folder)}: used by no kustomization")
    return problems


# -- rendering ---------------------------------------------------------------------------


def render(folder: Path, used: set[Path]) -> list[Object]:
    """The objects `kustomize build folder` makes, for the fields in FIELDS."""
    kustomization = yaml.safe_load((folder / KUSTOMIZATION).read_text())
    unknown = set(kustomization) - FIELDS
    if unknown:
        raise Invalid(f"{folder / KUSTOMIZATION}: fields this check cannot render: {unknown}")
    objects: list[Object] = []
    for entry in kustomization.get("resources", []):
        path = (folder / entry).resolve()
        if path.is_dir() and (path / KUSTOMIZATION).is_file():
            objects += render(path, used)
        elif path.is_file():
            used.add(path)
            objects += _objects(path)
        else:
            raise Invalid(f"{folder / KUSTOMIZATION}: resource {entry} does not exist")
    for patch in kustomization.get("patches", []):
        path = (folder / patch["path"]).resolve()
        used.add(path)
        target = patch["target"]
        chosen = [
            obj
            for obj in objects
            if obj["kind"] == target["kind"] and obj["metadata"]["name"] == target["name"]
        ]
        if not chosen:
            raise Invalid(f"patch {patch['path']}: no {target['kind']} {target['name']}")
        for obj in chosen:
            apply_patch(obj, yaml.safe_load(path.read_text()), patch["path"])
    for label in kustomization.get("labels", []):
        if set(label) - {"pairs"}:
            raise Invalid(f"labels: only `pairs` is rendered here, not {set(label) - {'pairs'}}")
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(label["pairs"])
    for image in kustomization.get("images", []):
        for obj in objects:
            for container in _containers(obj):
                if container["image"].split(":")[0] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    if "namespace" in kustomization:
        for obj in objects:
            obj["metadata"]["namespace"] = kustomization["namespace"]
    return objects


def _objects(path: Path) -> list[Object]:
    return [copy.deepcopy(obj) for obj in yaml.safe_load_all(path.read_text()) if obj]


def apply_patch(obj: Object, operations: list[Object], name: str) -> None:
    """JSON Patch (RFC 6902): add, remove, replace and test."""
    for operation in operations:
        *parents, last = [
            part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]
        ]
        node: Any = obj
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        op = operation["op"]
        key: Any = last if isinstance(node, dict) else (len(node) if last == "-" else int(last))
        if op == "test":
            if node[key] != operation["value"]:
                raise Invalid(f"patch {name}: {operation['path']} is {node[key]!r}, not the test's")
        elif op == "remove":
            del node[key]
        elif op == "add" and isinstance(node, list):
            node.insert(key, operation["value"])
        elif op in ("add", "replace"):
            if op == "replace" and key not in node:
                raise Invalid(f"patch {name}: nothing to replace at {operation['path']}")
            node[key] = operation["value"]
        else:
            raise Invalid(f"patch {name}: operation {op!r} is not rendered here")


def _pod_spec(obj: Object) -> Object | None:
    if obj["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        spec: Object = obj["spec"]["template"]["spec"]
        return spec
    return None


def _containers(obj: Object) -> list[Object]:
    spec = _pod_spec(obj)
    if spec is None:
        return []
    return [*spec.get("initContainers", []), *spec["containers"]]


# -- checks ------------------------------------------------------------------------------


def _validate(objects: list[Object], version: str) -> list[str]:
    problems = []
    for obj in objects:
        name = f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(p) for p in error.path)
            problems.append(f"{name}: {path}: {error.message}")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError):
            problems.append(f"{name}: no schema in Kubernetes {version}")
    return problems


def references(objects: list[Object], external: set[tuple[str, str]]) -> list[str]:
    problems = []
    present = {(obj["kind"], obj["metadata"]["name"]) for obj in objects} | external
    for obj in objects:
        name = f"{obj['kind']} {obj['metadata']['name']}"
        spec = _pod_spec(obj)
        if spec is not None:
            volumes = {volume["name"] for volume in spec.get("volumes", [])}
            for container in _containers(obj):
                for source in container.get("envFrom", []):
                    for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                        if field in source and (kind, source[field]["name"]) not in present:
                            problems.append(f"{name}: no {kind} {source[field]['name']}")
                for mount in container.get("volumeMounts", []):
                    if mount["name"] not in volumes:
                        problems.append(f"{name}: {container['name']}: no volume {mount['name']}")
        if obj["kind"] == "Service":
            pods = [
                o
                for o in objects
                if o["kind"] == "Deployment"
                and _matches(obj["spec"]["selector"], o["spec"]["template"]["metadata"]["labels"])
            ]
            if not pods:
                problems.append(f"{name}: its selector matches no Deployment's pods")
            ports = {
                port["name"]
                for pod in pods
                for c in _containers(pod)
                for port in c.get("ports", [])
            }
            for port in obj["spec"]["ports"]:
                target = port.get("targetPort")
                if isinstance(target, str) and target not in ports:
                    problems.append(f"{name}: no container port named {target}")
        if obj["kind"] == "PodDisruptionBudget":
            labels = obj["spec"]["selector"]["matchLabels"]
            if not any(
                o["kind"] == "Deployment"
                and _matches(labels, o["spec"]["template"]["metadata"]["labels"])
                for o in objects
            ):
                problems.append(f"{name}: its selector matches no Deployment's pods")
        if obj["kind"] == "HorizontalPodAutoscaler":
            target = obj["spec"]["scaleTargetRef"]
            if (target["kind"], target["name"]) not in present:
                problems.append(f"{name}: no {target['kind']} {target['name']}")
    return problems


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def drain_and_ports(objects: list[Object]) -> list[str]:
    """The Deployment flowport's stop follows from FLOWPORT_SHUTDOWN_GRACE_S, and its ports and
    probes are the ConfigMap's."""
    config = next(
        (
            o["data"]
            for o in objects
            if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "flowport-config"
        ),
        None,
    )
    deployment = next(
        (o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "flowport"),
        None,
    )
    if config is None or deployment is None:
        return ["no ConfigMap flowport-config or no Deployment flowport"]
    problems = []
    grace = float(config["FLOWPORT_SHUTDOWN_GRACE_S"])
    spec = deployment["spec"]["template"]["spec"]
    period = spec["terminationGracePeriodSeconds"]
    containers = {c["name"]: c for c in spec["containers"]}
    service = containers["flowport"]
    drained = _pre_stop_s(service) + grace
    if period < drained + SERVICE_STOP_S:
        problems.append(
            f"terminationGracePeriodSeconds {period} < the service's preStop and drain "
            f"({drained:g} s) + {SERVICE_STOP_S} s to stop"
        )
    if "envoy" in containers:
        envoy = _pre_stop_s(containers["envoy"])
        if envoy <= drained:
            problems.append(
                f"Envoy's preStop ({envoy:g} s) ends before the service has drained ({drained:g} s)"
            )
        if period < envoy + ENVOY_STOP_S:
            problems.append(
                f"terminationGracePeriodSeconds {period} < Envoy's preStop ({envoy:g} s) "
                f"+ {ENVOY_STOP_S} s to stop"
            )
        envoy_ports = {p["containerPort"] for p in containers["envoy"].get("ports", [])}
        if int(config["FLOWPORT_HTTP_PORT"]) not in envoy_ports:
            problems.append(
                f"Envoy's container has no port FLOWPORT_HTTP_PORT {config['FLOWPORT_HTTP_PORT']}"
            )
    grpc_port = int(config["FLOWPORT_GRPC_PORT"])
    health_port = int(config.get("FLOWPORT_HEALTH_PORT", grpc_port))
    if grpc_port not in {p["containerPort"] for p in service.get("ports", [])}:
        problems.append(f"the service's container has no port FLOWPORT_GRPC_PORT {grpc_port}")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        asked = service.get(probe, {}).get("grpc", {}).get("port")
        if asked != health_port:
            problems.append(f"the service's {probe} asks gRPC port {asked}, not {health_port}")
    return problems


def _pre_stop_s(container: Object) -> float:
    seconds = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    return float(seconds)


if __name__ == "__main__":
    sys.exit(main())
