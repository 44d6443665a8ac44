"""The container files, read as text (no Docker needed): what the image, compose and make promise.

scripts/docker_smoke.sh is the real proof (it builds, runs and calls the container); these catch a
broken promise early, in `make test`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not (ROOT / "Dockerfile").is_file(), reason="the container files are not in this tree"
)


def read(name: str) -> str:
    return (ROOT / name).read_text()


def stages(dockerfile: str) -> list[str]:
    return re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile, flags=re.MULTILINE | re.IGNORECASE)


def test_the_base_image_is_an_argument_defaulting_to_python_slim() -> None:
    dockerfile = read("Dockerfile")
    first_from = dockerfile.index("\nFROM ")
    assert "ARG BASE_IMAGE=python:3.11-slim" in dockerfile[:first_from]
    assert re.search(r"^FROM \$\{BASE_IMAGE\} AS base$", dockerfile, flags=re.MULTILINE)


def test_builds_prune_only_the_untagged_images_of_this_dockerfile() -> None:
    dockerfile, docker_mk = read("Dockerfile"), read("docker.mk")
    base_stage = dockerfile[dockerfile.index("AS base\n") : dockerfile.index("\nFROM base AS builder")]
    label = re.search(r'^LABEL (org\.opencontainers\.image\.title)="([^"]+)"$', base_stage, re.MULTILINE)
    assert label, "the base stage (which every stage builds on) carries the title label"
    assert f"DOCKER_TITLE_LABEL := {label[1]}={label[2]}" in docker_mk
    prune = re.search(r"^docker/prune:\n\t(.+)$", docker_mk, flags=re.MULTILINE)
    assert prune
    assert prune[1] == "$(DOCKER) image prune --force --filter label=$(DOCKER_TITLE_LABEL)"
    for target in ("docker/install", "docker/test"):
        recipe = re.search(rf"^{re.escape(target)}: docker/builder\n((?:\t.*\n)+)", docker_mk, re.MULTILINE)
        assert recipe, f"{target} builds the tagged builder stage first (the cache prune keeps)"
        assert "docker/prune" in recipe[1], f"{target} prunes after building"


def test_runtime_is_the_last_stage_and_test_a_target() -> None:
    names = stages(read("Dockerfile"))
    assert names[-1] == "runtime"
    assert {"builder", "test"} <= set(names)


def test_the_image_installs_the_pinned_serving_dependencies_only() -> None:
    dockerfile = read("Dockerfile")
    assert "-r /build/requirements.txt" in dockerfile
    assert "--no-deps /build" in dockerfile
    assert "[pipeline" not in dockerfile
    assert "[dev" not in dockerfile
    pins = read("requirements.txt").lower()
    for heavy in ("pyspark", "jupyter", "ipykernel", "nbclient", "matplotlib"):
        assert heavy not in pins


def test_the_service_runs_as_a_user_with_a_health_check_and_an_exec_entrypoint() -> None:
    dockerfile = read("Dockerfile")
    app = dockerfile[dockerfile.index("AS app") : dockerfile.index("AS test")]
    assert "USER app" in app
    assert "VOLUME /data" in app
    assert "HEALTHCHECK" in app
    assert "healthcheck.py" in app
    assert "MIGRATIONS_DIR=/app/migrations" in dockerfile
    assert "ML_API_HOST=0.0.0.0" in dockerfile
    assert "DATA_DIR=/data" in dockerfile
    assert 'exec flight-delay serve "$@"' in read("docker/entrypoint.sh")
    assert "ML_API_PORT" in read("docker/healthcheck.py")


def test_the_build_context_lets_in_what_the_dockerfile_copies_and_keeps_out_data() -> None:
    ignore = [line.strip() for line in read(".dockerignore").splitlines()]
    allowed = {line[1:].strip("/") for line in ignore if line.startswith("!") and "*" not in line}
    assert "*" in ignore  # an allowlist: everything out, then what the image needs back in
    copied = re.findall(r"^COPY (?!--from)(.+?) \S+$", read("Dockerfile"), flags=re.MULTILINE)
    for sources in copied:
        for source in sources.split():
            assert source.split("/")[0] in allowed, f"{source} is copied but .dockerignore keeps it out"
    for kept_out in ("var", ".venv", "notebook", ".git", "build"):
        assert kept_out not in allowed
    for pattern in ("**/*.pkl", "**/*.csv", "**/*.zip", "**/__pycache__"):
        assert pattern in ignore


def test_compose_serves_the_api_with_a_volume_and_a_postgres_profile() -> None:
    compose = read("docker-compose.yml")
    assert '${ML_API_PORT:-8000}:${ML_API_PORT:-8000}"' in compose
    assert "ML_API_PORT: ${ML_API_PORT:-8000}" in compose
    assert "BASE_IMAGE: ${BASE_IMAGE:-python:3.11-slim}" in compose
    assert "- data:/data" in compose
    assert "restart: unless-stopped" in compose
    assert "image: postgres:16" in compose
    assert 'profiles: ["postgres"]' in compose
    assert "pg_isready" in compose
    override = read("docker/compose.postgres.yml")
    assert "DATABASE_URL: postgresql+psycopg://" in override
    assert "condition: service_healthy" in override


@pytest.mark.parametrize(
    "target",
    [
        "docker/install",
        "docker/run",
        "docker/model_dummy",
        "docker/stop",
        "docker/logs",
        "docker/test",
    ],
)
def test_docker_mk_has_the_target(target: str) -> None:
    assert re.search(rf"^{re.escape(target)}:", read("docker.mk"), flags=re.MULTILINE)
    assert "include docker.mk" in read("Makefile")
