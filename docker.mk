# Docker targets, included by the Makefile. Compose: `docker compose` when it exists, else docker-compose.
#
#   make docker/install     builds the image $(DOCKER_IMAGE) (target runtime)
#   make docker/run         builds, starts the compose stack, waits until the api is live, prints the URL
#   make docker/model_dummy trains src/model_dummy.py inside the running api and activates the model,
#                           then waits until it is ready (the scaled stack: through its load balancer)
#   make docker/run-scaled  PostgreSQL, REPLICAS (3) api replicas and HAProxy in front of them
#                           (docker/compose.scaled.yml): builds, starts, waits, prints the URL
#   make docker/load        uploads MODEL (var/model.pkl) through the published port with the admin
#                           token, then waits until every replica is ready
#   make docker/wait        waits until the running stack is ready (every replica of the scaled one)
#   make docker/install-stack  the PostgreSQL and HAProxy images, FROM BASE_IMAGE as well
#   make docker/logs        the stacks' logs (FOLLOW=1 to follow)
#   make docker/stop        stops and removes the containers of both stacks (the volumes, i.e. the data, stay)
#   make docker/clean       the same and removes the volumes: the history and the models are lost
#   make docker/test        the test suite inside the image built with --target test
#   make docker/base        a local Debian base image (debootstrap) for machines without Docker Hub
#   make docker/smoke       scripts/docker_smoke.sh: the whole user flow, checked, on this machine
#   make docker/prune       removes the untagged images of this Dockerfile (its title label) and nothing else
#
# Builds keep the builder stage tagged ($(DOCKER_BUILDER_IMAGE): the pip layers, i.e. the build cache),
# then prune: a rebuild's replaced images would otherwise stay on disk untagged, and on the vfs storage
# driver every layer of each is a full copy (dozens of GB after a day of builds).
#
# Variables: BASE_IMAGE (python:3.11-slim), DOCKER_IMAGE (flight-delay:latest), ML_API_PORT (8000),
# DB=postgres (the history in PostgreSQL: compose profile + docker/compose.postgres.yml),
# REPLICAS (3: the scaled stack's api replicas), STACK (single or scaled: which running stack
# docker/model_dummy and docker/wait mean; by default the scaled one if it runs),
# DOCKER_POSTGRES_IMAGE (flight-delay-postgres:latest), DOCKER_LB_IMAGE (flight-delay-haproxy:latest),
# DOCKER_BUILD_NETWORK (e.g. host, for daemons without a default bridge), COMPOSE_PROJECT (flight-delay;
# the scaled stack's project is $(COMPOSE_PROJECT)-scaled),
# DOCKER_WAIT (seconds docker/run waits for healthy, 180), SEED (the dummy model's seed, from the Makefile),
# ADMIN_TOKEN_FILE (var/admin_token: the bearer token POST /model/load/ demands; made on first docker/run
# with 32 random bytes unless ML_API_ADMIN_TOKEN is given), ML_API_MODEL_SIGNING_KEY (optional).

BASE_IMAGE ?= python:3.11-slim
DOCKER ?= docker
DOCKER_IMAGE ?= flight-delay:latest
DOCKER_TEST_IMAGE ?= flight-delay:test
DOCKER_BUILDER_IMAGE ?= flight-delay:builder
DOCKER_POSTGRES_IMAGE ?= flight-delay-postgres:latest
DOCKER_LB_IMAGE ?= flight-delay-haproxy:latest
# The label every stage of the Dockerfile carries: what docker/prune may remove.
DOCKER_TITLE_LABEL := org.opencontainers.image.title=flight-delay
DOCKER_BUILD_NETWORK ?=
DOCKER_WAIT ?= 180
COMPOSE_PROJECT ?= flight-delay
ML_API_PORT ?= 8000
DB ?= sqlite
SEED ?= 0
LOCAL_BASE_IMAGE ?= flight-delay-base:bookworm
ADMIN_TOKEN_FILE ?= var/admin_token
REPLICAS ?= 3
# HAProxy follows this many replicas at most (server-template slots).
LB_SERVER_SLOTS ?= $(shell [ "$(REPLICAS)" -gt 10 ] 2>/dev/null && echo $(REPLICAS) || echo 10)
SCALED_PROJECT ?= $(COMPOSE_PROJECT)-scaled
# Where docker/model_dummy puts the model it trained in a replica, to upload it through the balancer.
DOCKER_DUMMY_MODEL ?= var/model_dummy-docker.pkl
STACK ?=
ML_API_URL = http://127.0.0.1:$(ML_API_PORT)
# Read when a recipe runs, so a token file made by this very make run is seen.
ML_API_ADMIN_TOKEN ?= $(shell cat $(ADMIN_TOKEN_FILE) 2>/dev/null)

COMPOSE_BIN ?= $(shell $(DOCKER) compose version >/dev/null 2>&1 && echo "$(DOCKER) compose" || echo docker-compose)
COMPOSE_FILES := -f docker-compose.yml $(if $(filter postgres,$(DB)),-f docker/compose.postgres.yml --profile postgres)
COMPOSE_ENV = ML_API_PORT=$(ML_API_PORT) BASE_IMAGE=$(BASE_IMAGE) FLIGHT_DELAY_IMAGE=$(DOCKER_IMAGE) \
	FLIGHT_DELAY_POSTGRES_IMAGE=$(DOCKER_POSTGRES_IMAGE) FLIGHT_DELAY_LB_IMAGE=$(DOCKER_LB_IMAGE) \
	API_REPLICAS=$(REPLICAS) LB_SERVER_SLOTS=$(LB_SERVER_SLOTS) ML_API_ADMIN_TOKEN=$(ML_API_ADMIN_TOKEN)
COMPOSE = $(COMPOSE_ENV) $(COMPOSE_BIN) -p $(COMPOSE_PROJECT) $(COMPOSE_FILES)
# stop, clean and logs see every service, whichever DB the stack was started with.
COMPOSE_ALL = $(COMPOSE_ENV) $(COMPOSE_BIN) -p $(COMPOSE_PROJECT) -f docker-compose.yml \
	-f docker/compose.postgres.yml --profile postgres
# The scaled stack: a compose file of its own (paths relative to the repository), its own project.
COMPOSE_SCALED = $(COMPOSE_ENV) $(COMPOSE_BIN) -p $(SCALED_PROJECT) --project-directory . \
	-f docker/compose.scaled.yml
# Which stack docker/model_dummy and docker/wait mean: STACK, else the scaled one if its api runs.
STACK_SH = $(if $(STACK),echo $(STACK),[ -n "$$($(DOCKER) ps -q --filter label=com.docker.compose.project=$(SCALED_PROJECT) \
	--filter label=com.docker.compose.service=api)" ] && echo scaled || echo single)
DOCKER_BUILD = $(DOCKER) build --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	$(if $(DOCKER_BUILD_NETWORK),--network $(DOCKER_BUILD_NETWORK))

.PHONY: docker/install docker/run docker/model_dummy docker/logs docker/stop docker/clean docker/test \
	docker/base docker/smoke docker/builder docker/prune docker/install-stack docker/install-postgres \
	docker/install-lb docker/run-scaled docker/load docker/wait

## docker/install: builds the serving image $(DOCKER_IMAGE) FROM $(BASE_IMAGE)
docker/install: docker/builder
	$(DOCKER_BUILD) --target runtime -t $(DOCKER_IMAGE) .
	@$(MAKE) --no-print-directory docker/prune
	@$(DOCKER) image inspect -f '$(DOCKER_IMAGE): {{.Size}} bytes' $(DOCKER_IMAGE)

# The builder stage under a tag, so that docker/prune keeps it: the next build reuses its pip layers.
docker/builder:
	$(DOCKER_BUILD) --target builder -t $(DOCKER_BUILDER_IMAGE) .

docker/prune:
	$(DOCKER) image prune --force --filter label=$(DOCKER_TITLE_LABEL)

## docker/install-stack: the PostgreSQL and HAProxy images FROM $(BASE_IMAGE) (no Docker Hub needed)
docker/install-stack: docker/install-postgres docker/install-lb

docker/install-postgres:
	$(DOCKER_BUILD) -t $(DOCKER_POSTGRES_IMAGE) docker/postgres
	@$(MAKE) --no-print-directory docker/prune

docker/install-lb:
	$(DOCKER_BUILD) -t $(DOCKER_LB_IMAGE) docker/haproxy
	@$(MAKE) --no-print-directory docker/prune

## docker/run: starts the stack in the background and waits until the api answers (GET /health/live)
# Docker's health check is readiness, which a fresh stack reaches only with a model (docker/model_dummy
# waits for it); this wait says whether the api is ready already (a model kept from an earlier run).
docker/run: docker/install $(if $(filter postgres,$(DB)),docker/install-postgres) $(ADMIN_TOKEN_FILE)
	$(COMPOSE) up -d
	@bash scripts/docker_wait_healthy.sh --live "$$($(COMPOSE) ps -q api)" $(DOCKER_WAIT)
	@echo "flight-delay API: $(ML_API_URL)  (docs: $(ML_API_URL)/docs)"
	@echo "POST /model/load/ needs: Authorization: Bearer \$$(cat $(ADMIN_TOKEN_FILE))"

## docker/run-scaled: PostgreSQL, REPLICAS api replicas and HAProxy in front (only its port published)
docker/run-scaled: docker/install docker/install-stack $(ADMIN_TOKEN_FILE)
	$(COMPOSE_SCALED) up -d --scale api=$(REPLICAS)
	@bash scripts/docker_wait_scaled.sh $(SCALED_PROJECT) $(ML_API_URL) $(REPLICAS) $(DOCKER_WAIT)
	@echo "flight-delay API, $(REPLICAS) replicas behind HAProxy: $(ML_API_URL)  (docs: $(ML_API_URL)/docs)"
	@echo "POST /model/load/ needs: Authorization: Bearer \$$(cat $(ADMIN_TOKEN_FILE))"

# The production container refuses to start with open model upload: it gets a random admin token.
$(ADMIN_TOKEN_FILE):
	@mkdir -p $(dir $@)
	@umask 077 && python3 -c "import secrets; print(secrets.token_hex(32))" >$@
	@echo "made an admin token for POST /model/load/ in $@"

## docker/model_dummy: trains the dummy model inside the running api, makes it the active model, waits
# The scaled stack: trained in one replica, copied out, uploaded through the balancer (docker/load).
docker/model_dummy:
	@if [ "$$($(STACK_SH))" = scaled ]; then \
		cid=$$($(COMPOSE_SCALED) ps -q api | head -n 1) && test -n "$$cid" && mkdir -p $(dir $(DOCKER_DUMMY_MODEL)) \
		&& echo "training the dummy model in replica $$(echo $$cid | cut -c1-12)" \
		&& $(DOCKER) exec $$cid python src/model_dummy.py --out /tmp/model_dummy.pkl --seed $(SEED) \
		&& $(DOCKER) cp $$cid:/tmp/model_dummy.pkl $(DOCKER_DUMMY_MODEL) \
		&& $(DOCKER) exec $$cid rm -f /tmp/model_dummy.pkl \
		&& $(MAKE) --no-print-directory docker/load MODEL=$(DOCKER_DUMMY_MODEL) STACK=scaled; \
	else \
		$(COMPOSE) exec -T api python src/model_dummy.py --out /data/model_dummy.pkl --seed $(SEED) \
		&& $(COMPOSE) exec -T api flight-delay load /data/model_dummy.pkl \
		&& $(MAKE) --no-print-directory docker/wait STACK=single; \
	fi

## docker/load: uploads MODEL through the published port (the scaled stack's balancer), then waits
docker/load:
	@test -f "$(MODEL)" || { echo "docker/load: no model file $(MODEL) (make docker/load MODEL=path)" >&2; exit 2; }
	@echo "POST $(ML_API_URL)/model/load/ $(MODEL)"
	@printf 'Authorization: Bearer %s\n' "$$(cat $(ADMIN_TOKEN_FILE))" | curl -sS --fail-with-body \
		--max-time 120 -H @- -F "file=@$(MODEL)" $(ML_API_URL)/model/load/ && echo
	@$(MAKE) --no-print-directory docker/wait

## docker/wait: waits until the running stack is ready (the scaled one: every replica, and the balancer)
docker/wait:
	@if [ "$$($(STACK_SH))" = scaled ]; then \
		bash scripts/docker_wait_scaled.sh --ready $(SCALED_PROJECT) $(ML_API_URL) \
			"$$($(COMPOSE_SCALED) ps -q api | wc -l)" $(DOCKER_WAIT); \
	else \
		bash scripts/docker_wait_healthy.sh "$$($(COMPOSE) ps -q api)" $(DOCKER_WAIT); \
	fi

docker/logs:
	@if [ "$$($(STACK_SH))" = scaled ]; then $(COMPOSE_SCALED) logs --tail=200 $(if $(FOLLOW),--follow); \
	else $(COMPOSE_ALL) logs --tail=200 $(if $(FOLLOW),--follow); fi

# Both stacks, whichever runs.
docker/stop:
	$(COMPOSE_ALL) down --remove-orphans
	$(COMPOSE_SCALED) down --remove-orphans

docker/clean:
	$(COMPOSE_ALL) down --remove-orphans --volumes
	$(COMPOSE_SCALED) down --remove-orphans --volumes

## docker/test: inside the image, the tests of what the image decides (Dockerfile), no network but loopback
docker/test: docker/builder
	$(DOCKER_BUILD) --target test -t $(DOCKER_TEST_IMAGE) .
	@$(MAKE) --no-print-directory docker/prune
	$(DOCKER) run --rm --network none $(DOCKER_TEST_IMAGE)

docker/base:
	bash scripts/docker_base.sh $(LOCAL_BASE_IMAGE)

docker/smoke:
	bash scripts/docker_smoke.sh
