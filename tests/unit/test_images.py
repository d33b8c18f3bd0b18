"""images/Dockerfile, checked statically (no Docker engine here, and no hadolint).

What is checked: the base is pinned to an exact Python release, every final target is
multi-stage (it copies a finished virtualenv from a build stage), runs as uid 65532 that has a
passwd entry, carries no pip or compilers, and starts the command the operator and the
manifests expect. Whether the images build is only known where Docker runs (`make images`,
the kind CI workflow).
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
TARGETS = {"operator": "loopwright-operator", "trainer": "loopwright-trainer",
           "predictor": "loopwright-predictor"}
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|make|build-essential|apt-get install|cargo|rustc)\b")


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
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", image), image
    roots = {s.base for s in stages.values() if s.base not in stages}
    assert roots == {"${PYTHON_IMAGE}"}, "every stage starts from the one pinned base"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_final_targets_are_multi_stage_non_root(target: str,
                                                parsed: tuple[dict[str, str], dict[str, Stage]]) -> None:
    _, stages = parsed
    chain = _chain(stages, target)
    instructions = [i for stage in chain for i in stage.instructions]
    copies = [arg for kind, arg in instructions if kind == "COPY"]
    assert any(arg.startswith("--from=venv-") for arg in copies), "the virtualenv comes from a build stage"
    users = [arg for kind, arg in stages[target].instructions if kind == "USER"]
    assert users == ["65532:65532"]
    runs = " ".join(arg for kind, arg in instructions if kind == "RUN")
    assert not BUILD_TOOLS.search(runs), runs
    assert re.search(r"pip uninstall --yes [^&]*\bpip\b", runs), "no pip in the final image"
    assert "useradd --system --uid 65532" in runs, "uid 65532 has a passwd entry (kopf's getpass)"
    (cmd,) = [arg for kind, arg in stages[target].instructions if kind == "CMD"]
    assert " ".join(yaml.safe_load(cmd)) == TARGETS[target]


def test_build_stages_install_only_their_extra(parsed: tuple[dict[str, str], dict[str, Stage]]) -> None:
    _, stages = parsed
    for role in TARGETS:
        runs = " ".join(arg for kind, arg in stages[f"venv-{role}"].instructions if kind == "RUN")
        extras = set(re.findall(r"'\.\[(\w+)\]'", runs))
        assert extras == {role}


def test_operator_is_the_default_target(parsed: tuple[dict[str, str], dict[str, Stage]]) -> None:
    _, stages = parsed
    assert list(stages)[-1] == "operator"


def test_entrypoints_exist_in_the_package() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for role, command in TARGETS.items():
        argv = shlex.split(command)
        if argv[0] != "python":
            assert argv[0] in scripts, f"{role}: console script {argv[0]} missing from pyproject"
        else:
            assert (REPO / "operator" / Path(*argv[2].split("."))).is_dir()


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!operator/"} <= set(lines)
