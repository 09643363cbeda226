"""deploy/: the Kubernetes manifests pass their check, and the check catches what it is for;
the Containerfile passes hadolint."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
VERSION = "1.30.0"


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_kubernetes", REPO / "deploy" / "check_kubernetes.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_kubernetes = _checker()


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    """A copy of deploy/kubernetes to spoil."""
    copy = tmp_path / "kubernetes"
    shutil.copytree(REPO / "deploy" / "kubernetes", copy)
    return copy


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_the_manifests_are_valid_for_the_stated_kubernetes() -> None:
    assert check_kubernetes.check(REPO / "deploy" / "kubernetes", VERSION) == []


def test_an_older_kubernetes_lacks_what_they_use() -> None:
    # preStop's sleep came in 1.29's API: the version stated is the one checked.
    problems = check_kubernetes.check(REPO / "deploy" / "kubernetes", "1.28.0")
    assert any("'sleep' was unexpected" in problem for problem in problems)


def test_a_field_the_api_would_drop_is_caught(manifests: Path) -> None:
    _edit(
        manifests / "deployment.yaml",
        "      enableServiceLinks: false",
        "      enableServiceLink: false",
    )
    problems = check_kubernetes.check(manifests, VERSION)
    assert any("'enableServiceLink' was unexpected" in problem for problem in problems)


def test_a_longer_drain_needs_a_longer_grace_period(manifests: Path) -> None:
    _edit(
        manifests / "configmap.yaml",
        'FLOWPORT_SHUTDOWN_GRACE_S: "25"',
        'FLOWPORT_SHUTDOWN_GRACE_S: "60"',
    )
    problems = check_kubernetes.check(manifests, VERSION)
    assert (
        "base: terminationGracePeriodSeconds 45 < the service's preStop and drain (65 s) + 10 s to stop"
        in problems
    )
    assert "base: Envoy's preStop (32 s) ends before the service has drained (65 s)" in problems


def test_names_that_resolve_to_nothing_are_caught(manifests: Path) -> None:
    _edit(manifests / "deployment.yaml", "name: flowport-secrets", "name: flowport-secret")
    _edit(manifests / "service.yaml", "targetPort: http", "targetPort: https")
    problems = check_kubernetes.check(manifests, VERSION)
    assert "base: Deployment flowport: no Secret flowport-secret" in problems
    assert "base: Service flowport: no container port named https" in problems


def test_an_overlay_patch_that_no_longer_fits_is_caught(manifests: Path) -> None:
    _edit(manifests / "deployment.yaml", "        - name: envoy\n", "        - name: proxy\n")
    problems = check_kubernetes.check(manifests, VERSION)
    assert any(
        p.startswith("overlays/mesh: cannot render: patch deployment-patch.yaml") for p in problems
    )


def test_files_no_kustomization_uses_are_caught(manifests: Path) -> None:
    (manifests / "forgotten.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"
    )
    _edit(manifests / "kustomization.yaml", "  - migrate-job.yaml\n", "")
    problems = check_kubernetes.check(manifests, VERSION)
    assert "forgotten.yaml: used by no kustomization" in problems
    assert "migrate-job.yaml: used by no kustomization" in problems


def test_a_field_kustomize_has_but_this_check_cannot_render_fails(manifests: Path) -> None:
    with (manifests / "kustomization.yaml").open("a") as file:
        file.write("commonAnnotations: {team: ai}\n")
    problems = check_kubernetes.check(manifests, VERSION)
    assert any("fields this check cannot render: {'commonAnnotations'}" in p for p in problems)


def test_the_containerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run(
        [str(hadolint), str(REPO / "Containerfile")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
