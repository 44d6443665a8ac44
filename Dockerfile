# flight-delay: the scoring API (Flask under gunicorn) with only its serving dependencies.
#
#   make docker/install                     # docker build --target runtime -t flight-delay:latest .
#   make docker/install BASE_IMAGE=flight-delay-base:bookworm   # a local base (scripts/docker_base.sh)
#   make docker/test                        # the test suite inside the image (--target test)
#
# Stages: base (python, libgomp1, the user) -> builder (a venv with requirements.txt, then the project
# with --no-deps) -> app (the venv and what the service reads) -> test, runtime (the default: last).
# BASE_IMAGE: any Debian-based image with python3.11 and its venv module.
# Few layers after the venv is copied: every layer is a full copy on some storage drivers (vfs).
# Every stage carries the title label: `make docker/install` removes the untagged images it leaves
# behind by that label (the image a rebuild replaced), and nothing else.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS base
LABEL org.opencontainers.image.title="flight-delay"
ENV LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    MIGRATIONS_DIR=/app/migrations \
    DATA_DIR=/data \
    ML_API_HOST=0.0.0.0 \
    ML_API_PORT=8000
ARG APP_UID=10001
# LightGBM needs the OpenMP runtime (libgomp1), which slim images lack; a debootstrap base has it.
# The service runs as `app`, which owns /data (the volume: SQLite file, model store).
RUN if ! dpkg -s libgomp1 >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends libgomp1 \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && groupadd --system --gid "${APP_UID}" app \
    && useradd --system --uid "${APP_UID}" --gid app --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app \
    && mkdir -p /data /app \
    && chown app:app /data
WORKDIR /app

FROM base AS builder
# binutils (strip) for the builder alone: the runtime stage copies the venv, never this layer.
RUN if ! command -v strip >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends binutils \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv
# The pinned serving dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt /build/
RUN pip install --require-virtualenv --no-compile -r /build/requirements.txt
COPY pyproject.toml README.md /build/
COPY src/ /build/src/
COPY docker/slim_venv.sh docker/precompile.py /build/
# The project itself (no extras: no Spark, no Jupyter); then out goes what serving never reads
# (docker/slim_venv.sh: test suites, sources and headers, build tools, unused subpackages, debug
# symbols, the installers, every bytecode file), and back comes the bytecode of what serving imports.
RUN pip install --require-virtualenv --no-compile --no-deps /build \
    && pip check \
    && flight-delay --version \
    && sh /build/slim_venv.sh /opt/venv \
    && python /build/precompile.py

FROM base AS app
COPY migrations/ migrations/
COPY src/model_dummy.py src/model_dummy.py
COPY docker/entrypoint.sh docker/healthcheck.py docker/
VOLUME /data
EXPOSE 8000
# Readiness: healthy when this container can serve a prediction now (GET /health/ready: the active
# model loaded and scoring, the database writable), so a balancer or an orchestrator never sends it
# traffic before. A fresh container without a model is live (GET /health/live) but not healthy until
# a model is loaded: make docker/run waits for liveness, make docker/model_dummy for this.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/app/docker/healthcheck.py", "ready"]
# flight-delay serve migrates once (unless MIGRATE_AT_START=false, as the scaled stack's replicas,
# whose release step is `flight-delay migrate`), activates the start-up model, then becomes
# gunicorn's master: the entrypoint execs it, so gunicorn is PID 1 and gets docker stop's SIGTERM.
ENTRYPOINT ["/bin/sh", "/app/docker/entrypoint.sh"]
CMD []
USER app
COPY --from=builder /opt/venv /opt/venv

# `docker build --target test`: inside the image, the tests of what the image itself decides: the
# pinned packages (their private internals behind compat/, the HTTP protocol, gunicorn's workers, the
# migrations, the model sandbox's limits, psycopg and SQLite as installed) and the served API over
# them. `make test` runs the whole suite, Spark's, the browser's and the protocol clients' included,
# on SQLite and on PostgreSQL; running all of it again here doubled CI's time for little more.
FROM app AS test
USER root
COPY requirements.txt pyproject.toml ./
RUN python -m ensurepip --default-pip >/dev/null \
    && pip install --require-virtualenv -c requirements.txt \
        pytest==9.1.1 pytest-timeout==2.4.0 requests==2.34.2 schemathesis==4.32.5 hypothesis==6.170.15
COPY tests/ tests/
USER app
CMD ["python", "-m", "pytest", "-p", "no:cacheprovider", \
     "tests/test_compat.py", "tests/test_http_protocol.py", "tests/test_gunicorn.py", \
     "tests/test_startup.py", "tests/test_migrations.py", "tests/test_host_writer.py", \
     "tests/test_history_writer.py", "tests/test_sandbox.py", "tests/test_predict.py", \
     "tests/test_api_paths.py", "tests/test_health.py", "tests/test_access_server.py", \
     "tests/test_context_api.py", "tests/test_security_headers.py", "tests/test_transport.py", \
     "tests/test_metrics.py"]

# The service: the default target.
FROM app AS runtime
