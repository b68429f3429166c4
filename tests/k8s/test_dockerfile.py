"""The Dockerfile (no Docker engine here to build it; `make k8s-check` lints it with hadolint):
what it copies exists and is in the build context, what it runs exists, and its Python packages
are pinned."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field

from services.cli import build_parser
from tests.k8s.manifests import ROOT
from tools import constraints

DOCKERFILE = ROOT / "Dockerfile"
NON_ROOT_UID = "10001"


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, keyword: str) -> str:
        values = [arg for key, arg in self.instructions if key == keyword]
        assert values, f"stage {self.name} has no {keyword}"
        return values[-1]

    def all(self, keyword: str) -> list[str]:
        return [arg for key, arg in self.instructions if key == keyword]


def _stages() -> dict[str, Stage]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, argument = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            base, _, name = argument.partition(" AS ")
            current = Stage(name.strip(), base.strip())
            stages[current.name] = current
        elif current is not None:
            current.instructions.append((keyword, argument.strip()))
    return stages


def _context_allows(path: str) -> bool:
    """Whether .dockerignore (an allowlist: `*`, then `!path` lines) keeps `path`."""
    kept = True
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            kept = negated
    return kept


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    copied = 0
    for stage in _stages().values():
        for argument in stage.all("COPY"):
            words = [w for w in argument.split() if not w.startswith("--")]
            if "--from=" in argument:
                continue
            for source in words[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such path"
                assert _context_allows(source), f"COPY {source}: excluded by .dockerignore"
                copied += 1
    assert copied >= 6


def test_the_default_image_runs_the_pantree_command_as_a_non_root_user() -> None:
    stages = _stages()
    default = list(stages.values())[-1]
    assert default.name == "pantree"
    assert json.loads(default.last("ENTRYPOINT")) == ["pantree"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "pantree" in scripts
    build_parser().parse_args(json.loads(default.last("CMD")))
    assert default.last("USER").split(":")[0] == NON_ROOT_UID
    env = " ".join(default.all("ENV"))
    assert "PANTREE_CATALOG=/opt/pantree/catalog/completejourney.json.gz" in env
    build = stages["build"]
    assert "--output /opt/pantree/catalog/completejourney.json.gz" in build.last("RUN")


def test_the_model_server_target_serves_when_sagemaker_runs_it_with_serve() -> None:
    stage = _stages()["model-server"]
    assert json.loads(stage.last("ENTRYPOINT")) == ["serve"]
    assert stage.last("EXPOSE") == "8080"
    assert "SAGEMAKER_BIND_TO_PORT=8080" in " ".join(stage.all("ENV"))
    assert stage.last("USER").split(":")[0] == NON_ROOT_UID
    assert any("deploy/sagemaker/serve /usr/local/bin/serve" in c for c in stage.all("COPY"))


def test_no_compiler_reaches_a_final_stage() -> None:
    stages = _stages()
    for name in ("pantree", "model-server"):
        runs = " ".join(stages[name].all("RUN"))
        assert not re.search(r"\b(apt-get|gcc|build-essential|g\+\+)\b", runs), name
        assert stages[name].base == "python-base"
    assert "apt-get" not in " ".join(stages["python-base"].all("RUN"))


def test_installs_use_the_constraints_file_that_pins_every_runtime_requirement() -> None:
    for stage in _stages().values():
        for run in stage.all("RUN"):
            if "pip install" in run:
                assert "--constraint constraints.txt" in run, run
    assert constraints.problems() == [], "run `make constraints`"
