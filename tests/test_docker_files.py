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


def test_the_runtime_venv_is_slimmed_then_gets_back_the_bytecode_serving_imports() -> None:
    dockerfile = read("Dockerfile")
    builder = dockerfile[dockerfile.index("AS builder") : dockerfile.index("AS app")]
    slimmed, compiled = (
        builder.index("sh /build/slim_venv.sh /opt/venv"),
        builder.index("python /build/precompile.py"),
    )
    assert slimmed < compiled  # every .pyc deleted first, then those of what serving imports written back
    assert "--no-compile" in builder
    script = read("docker/slim_venv.sh")
    assert "-name tests -o -name test" in script
    assert "pip uninstall --yes --quiet setuptools wheel pip" in script
    assert "-name __pycache__ -exec rm -rf" in script
    assert "strip --strip-debug" in script
    assert "--strip-unneeded" not in script  # breaks the wheels' patched libraries (numpy.libs)
    assert "UNCHECKED_HASH" in read("docker/precompile.py")


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
    # Built here FROM BASE_IMAGE (docker/postgres): no image pulled from Docker Hub.
    assert "image: ${FLIGHT_DELAY_POSTGRES_IMAGE:-flight-delay-postgres:latest}" in compose
    assert "context: docker/postgres" in compose
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
        "docker/install-stack",
        "docker/run-scaled",
        "docker/load",
        "docker/wait",
    ],
)
def test_docker_mk_has_the_target(target: str) -> None:
    assert re.search(rf"^{re.escape(target)}:", read("docker.mk"), flags=re.MULTILINE)
    assert "include docker.mk" in read("Makefile")


def service_block(compose: str, name: str) -> str:
    """The text of one service of a compose file (from `  name:` to the next top-level service)."""
    match = re.search(rf"^  {re.escape(name)}:\n((?:    .*\n|\n)+)", compose, flags=re.MULTILINE)
    assert match, f"no service {name}"
    return match[1]


def test_the_health_checks_are_readiness() -> None:
    dockerfile = read("Dockerfile")
    healthcheck = re.search(r"^HEALTHCHECK .*\\\n\s+CMD (.+)$", dockerfile, flags=re.MULTILINE)
    assert healthcheck
    assert healthcheck[1] == '["python", "/app/docker/healthcheck.py", "ready"]'
    script = read("docker/healthcheck.py")
    assert '"ready": "/health/ready"' in script
    assert '"live": "/health/live"' in script
    assert 'else "ready"' in script  # no argument: readiness
    ready_test = 'test: ["CMD", "python", "/app/docker/healthcheck.py", "ready"]'
    assert ready_test in service_block(read("docker-compose.yml"), "api")
    assert ready_test in service_block(read("docker/compose.scaled.yml"), "api")
    # A fresh single stack is live, not ready, until docker/model_dummy: docker/run waits for liveness,
    # docker/model_dummy (through docker/wait) for readiness.
    docker_mk = read("docker.mk")
    run = re.search(r"^docker/run: .*\n((?:\t.*\n)+)", docker_mk, flags=re.MULTILINE)
    assert run
    assert "docker_wait_healthy.sh --live" in run[1]
    assert "docker/wait" in docker_mk[docker_mk.index("\ndocker/model_dummy:") :]


def test_the_load_balancer_checks_readiness_and_finds_the_replicas_by_dns() -> None:
    cfg = read("docker/haproxy/haproxy.cfg")
    ready = cfg[cfg.index("\nbackend replicas_ready") : cfg.index("\nbackend replicas_live")]
    assert "option httpchk" in ready
    assert re.search(r"http-check send meth GET uri /health/ready\b", ready)
    assert "http-check expect status 200" in ready
    assert re.search(r"^\s+default-server check .*resolvers docker", ready, flags=re.MULTILINE)
    assert 'server-template api "${API_SERVER_SLOTS}" "${API_SERVICE}:${API_PORT}"' in ready
    assert re.search(r"nameserver \S+ 127\.0\.0\.11:53", cfg)  # Docker's embedded DNS
    frontend = cfg[cfg.index("\nfrontend api") : cfg.index("\nbackend replicas_ready")]
    assert "default_backend replicas_ready" in frontend
    # Only when no replica is ready: the live ones (a fresh stack takes its first model through lb).
    assert "use_backend replicas_live if { nbsrv(replicas_ready) eq 0 }" in frontend
    assert "X-Request-ID" in frontend
    assert "set-header X-Request-ID" not in cfg
    assert "del-header X-Request-ID" not in cfg
    live = cfg[cfg.index("\nbackend replicas_live") : cfg.index("\nfrontend stats")]
    assert "uri /health/live" in live


def test_the_stack_images_build_from_the_base_image() -> None:
    for name in ("docker/postgres/Dockerfile", "docker/haproxy/Dockerfile"):
        dockerfile = read(name)
        first_from = dockerfile.index("\nFROM ")
        assert "ARG BASE_IMAGE=python:3.11-slim" in dockerfile[:first_from], name
        assert re.findall(r"^FROM .*$", dockerfile, flags=re.MULTILINE) == ["FROM ${BASE_IMAGE}"], name
        assert 'LABEL org.opencontainers.image.title="flight-delay"' in dockerfile, name  # docker/prune
    assert "apt-get install -y --no-install-recommends postgresql" in read("docker/postgres/Dockerfile")
    assert "apt-get install -y --no-install-recommends haproxy" in read("docker/haproxy/Dockerfile")
    entrypoint = read("docker/postgres/entrypoint.sh")
    for variable in ("POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB", "PGDATA"):
        assert variable in entrypoint
    assert "--auth-host=scram-sha-256" in entrypoint
    assert "host all all all scram-sha-256" in entrypoint
    assert "listen_addresses = '*'" in entrypoint
    docker_mk = read("docker.mk")
    assert "$(DOCKER_BUILD) -t $(DOCKER_POSTGRES_IMAGE) docker/postgres" in docker_mk
    assert "$(DOCKER_BUILD) -t $(DOCKER_LB_IMAGE) docker/haproxy" in docker_mk


def test_the_scaled_stack_shares_no_disk_and_publishes_only_the_balancer() -> None:
    compose = read("docker/compose.scaled.yml")
    api = service_block(compose, "api")
    assert "volumes:" not in api  # no named volume, no bind mount: nothing shared between replicas
    assert re.search(r"^    tmpfs:\n      - /data:", api, flags=re.MULTILINE)  # each replica's own cache
    assert "ports:" not in api
    assert "scale: ${API_REPLICAS:-3}" in api
    assert 'MIGRATE_AT_START: "false"' in api
    assert "condition: service_completed_successfully" in api
    assert 'command: ["flight-delay", "migrate"]' in service_block(compose, "migrate")
    lb = service_block(compose, "lb")
    assert '- "${ML_API_BIND:-127.0.0.1}:${ML_API_PORT:-8000}:8000"' in lb
    assert "context: docker/haproxy" in lb
    top_level = re.findall(r"^  (\w+):$", compose, flags=re.MULTILINE)
    assert top_level == ["postgres", "migrate", "api", "lb", "pgdata"]
    # The same PostgreSQL as the single stack's postgres profile.
    single = service_block(read("docker-compose.yml"), "postgres")
    scaled = service_block(compose, "postgres")
    for line in (
        "image: ${FLIGHT_DELAY_POSTGRES_IMAGE:-flight-delay-postgres:latest}",
        "- pgdata:/var/lib/postgresql/data",
        "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:-flight_delay}",
        'test: ["CMD-SHELL", "pg_isready -h 127.0.0.1 -U flight_delay -d flight_delay"]',
    ):
        assert line in single, line
        assert line in scaled, line


def test_make_runs_the_scaled_stack_and_removes_it_with_the_single_one() -> None:
    docker_mk = read("docker.mk")
    assert "REPLICAS ?= 3" in docker_mk
    run = re.search(r"^docker/run-scaled: (.*)\n((?:\t.*\n)+)", docker_mk, flags=re.MULTILINE)
    assert run
    assert {"docker/install", "docker/install-stack"} <= set(run[1].split())
    assert "$(COMPOSE_SCALED) up -d --scale api=$(REPLICAS)" in run[2]
    assert "docker_wait_scaled.sh" in run[2]
    assert "-f docker/compose.scaled.yml" in docker_mk
    for target in ("docker/stop", "docker/clean"):
        recipe = re.search(rf"^{re.escape(target)}:\n((?:\t.*\n)+)", docker_mk, flags=re.MULTILINE)
        assert recipe
        assert "$(COMPOSE_ALL) down" in recipe[1]
        assert "$(COMPOSE_SCALED) down" in recipe[1]
    smoke = read("scripts/docker_smoke.sh")
    assert "mk docker/run-scaled REPLICAS=$REPLICAS" in smoke
    assert "bash scripts/docker_smoke.sh" in read(".ci/run")


def test_the_images_test_run_names_test_files_that_exist() -> None:
    dockerfile = read("Dockerfile")
    test_stage = dockerfile[dockerfile.index("FROM app AS test") : dockerfile.index("FROM app AS runtime")]
    named = re.findall(r'"(tests/[^"]+\.py)"', test_stage)
    assert len(named) >= 10, "the image runs the tests of what it decides (compat, protocol, migrations...)"
    assert "tests/test_compat.py" in named  # the pinned packages' private internals, as installed
    for path in named:
        assert (ROOT / path).is_file(), f"the image's test run names {path}, which does not exist"
