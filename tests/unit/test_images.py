"""images/Dockerfile and images/python-base.Dockerfile, checked statically.

The images themselves are built and run by `make images` and the kind targets; what is checked
here is what a review would: one pinned base for every stage, final images that copy a finished
virtualenv from a build stage, run as uid 65532 (with a passwd entry), carry no pip or compilers,
install only from the host-made wheelhouse, start the entry point the operator and manifests
expect, and carry OCI labels.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "images" / "Dockerfile"
TARGETS = {"operator": "loopwright-operator", "ml": "loopwright-predictor"}
# Every entry point the operator puts in a pod of the ML image (builders/jobs.py, predictor.py).
ML_ENTRYPOINTS = ("loopwright-trainer", "loopwright-profiler", "loopwright-verifier", "loopwright-compactor",
                  "loopwright-predictor")
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|make|build-essential|apt-get install|cargo|rustc)\b")
LABELS = ("title", "description", "version", "revision", "source", "licenses")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def _parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """ARGs before the first FROM, and the stages with their (instruction, argument) lines."""
    joined = re.sub(r"\\\n", " ", text)
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else ""
            stages.append(Stage(name=name, base=parts[0]))
        elif stages:
            stages[-1].instructions.append((keyword, rest.strip()))
        elif keyword == "ARG":
            key, _, value = rest.partition("=")
            args[key] = value
    return args, stages


@pytest.fixture(scope="module")
def parsed() -> tuple[dict[str, str], dict[str, Stage]]:
    args, stages = _parse(DOCKERFILE.read_text())
    return args, {s.name: s for s in stages}


def _chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """A stage and the stages it is built FROM, nearest first."""
    chain = [stages[name]]
    while chain[-1].base in stages:
        chain.append(stages[chain[-1].base])
    return chain


def test_base_is_an_exact_slim_python_release(parsed: tuple[dict[str, str], dict[str, Stage]]) -> None:
    args, stages = parsed
    image = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image
    roots = {s.base for s in stages.values() if s.base not in stages}
    assert roots == {"${PYTHON_IMAGE}"}, "every stage starts from the one pinned base"
    build_script = (REPO / "images" / "build.sh").read_text()
    assert f"UPSTREAM_PYTHON={image}\n" in build_script, "make images pulls the Dockerfile's default base"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_final_targets_are_multi_stage_non_root(target: str,
                                                parsed: tuple[dict[str, str], dict[str, Stage]]) -> None:
    _, stages = parsed
    chain = _chain(stages, target)
    instructions = [i for stage in chain for i in stage.instructions]
    copies = [arg for kind, arg in instructions if kind == "COPY"]
    assert copies == [f"--from=venv-{target} /opt/loopwright /opt/loopwright"], "only the virtualenv"
    users = [arg for kind, arg in stages[target].instructions if kind == "USER"]
    assert users == ["65532:65532"]
    runs = " ".join(arg for kind, arg in instructions if kind == "RUN")
    assert not BUILD_TOOLS.search(runs), runs
    assert re.search(r"pip uninstall --yes [^&]*\bpip\b", runs), "no pip in the final image"
    assert "useradd --system --uid 65532" in runs, "uid 65532 has a passwd entry (kopf's getpass)"
    (cmd,) = [arg for kind, arg in stages[target].instructions if kind == "CMD"]
    assert " ".join(yaml.safe_load(cmd)) == TARGETS[target]
    labels = " ".join(arg for kind, arg in instructions if kind == "LABEL")
    labels += " ".join(re.findall(r'--label "([^"]+)"', (REPO / "images" / "build.sh").read_text()))
    for label in LABELS:
        assert f"org.opencontainers.image.{label}=" in labels


def test_virtualenvs_install_only_from_the_wheelhouse(
        parsed: tuple[dict[str, str], dict[str, Stage]]) -> None:
    _, stages = parsed
    env = " ".join(arg for kind, arg in stages["build"].instructions if kind == "ENV")
    assert "PIP_NO_INDEX=1" in env
    assert "PIP_FIND_LINKS=/wheels" in env
    for target in TARGETS:
        runs = [arg for kind, arg in stages[f"venv-{target}"].instructions if kind == "RUN"]
        assert f"-r /tmp/requirements-{target}.txt" in runs[0], "third-party wheels in a layer of their own"
        assert "--no-deps /project/loopwright-" in runs[1]
        assert "pip check" in runs[1]
        assert all("venv --without-pip" in run for run in runs[:1]), "pip never enters the virtualenv"


def test_operator_is_the_default_target(parsed: tuple[dict[str, str], dict[str, Stage]]) -> None:
    _, stages = parsed
    assert list(stages)[-1] == "operator"


def test_entrypoints_exist_in_the_package() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for command in (*TARGETS.values(), *ML_ENTRYPOINTS):
        assert shlex.split(command)[0] in scripts, f"console script {command} missing from pyproject"


def test_the_offline_python_base_has_no_pip_or_compiler() -> None:
    text = (REPO / "images" / "python-base.Dockerfile").read_text()
    installed = re.search(r"apt-get install[^&]*", text)
    assert installed
    words = set(installed.group(0).split())
    packages = words - {"apt-get", "install", "-y", "-qq", "--no-install-recommends", "\\"}
    assert packages == {"python3", "ca-certificates", "netbase"}
