# Docker targets, included by the Makefile. Compose: `docker compose` when it exists, else docker-compose.
#
#   make docker/install     builds the image $(DOCKER_IMAGE) (target runtime)
#   make docker/run         builds, starts the compose stack, waits until the api is healthy, prints the URL
#   make docker/model_dummy trains src/model_dummy.py inside the running api and activates the model
#   make docker/logs        the stack's logs (FOLLOW=1 to follow)
#   make docker/stop        stops and removes the containers (the volumes, i.e. the data, stay)
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
# DB=postgres (the history in PostgreSQL 16: compose profile + docker/compose.postgres.yml),
# DOCKER_BUILD_NETWORK (e.g. host, for daemons without a default bridge), COMPOSE_PROJECT (flight-delay),
# DOCKER_WAIT (seconds docker/run waits for healthy, 180), SEED (the dummy model's seed, from the Makefile),
# ADMIN_TOKEN_FILE (var/admin_token: the bearer token POST /model/load/ demands; made on first docker/run
# with 32 random bytes unless ML_API_ADMIN_TOKEN is given), ML_API_MODEL_SIGNING_KEY (optional).

BASE_IMAGE ?= python:3.11-slim
DOCKER ?= docker
DOCKER_IMAGE ?= flight-delay:latest
DOCKER_TEST_IMAGE ?= flight-delay:test
DOCKER_BUILDER_IMAGE ?= flight-delay:builder
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
# Read when a recipe runs, so a token file made by this very make run is seen.
ML_API_ADMIN_TOKEN ?= $(shell cat $(ADMIN_TOKEN_FILE) 2>/dev/null)

COMPOSE_BIN ?= $(shell $(DOCKER) compose version >/dev/null 2>&1 && echo "$(DOCKER) compose" || echo docker-compose)
COMPOSE_FILES := -f docker-compose.yml $(if $(filter postgres,$(DB)),-f docker/compose.postgres.yml --profile postgres)
COMPOSE_ENV = ML_API_PORT=$(ML_API_PORT) BASE_IMAGE=$(BASE_IMAGE) FLIGHT_DELAY_IMAGE=$(DOCKER_IMAGE) \
	ML_API_ADMIN_TOKEN=$(ML_API_ADMIN_TOKEN)
COMPOSE = $(COMPOSE_ENV) $(COMPOSE_BIN) -p $(COMPOSE_PROJECT) $(COMPOSE_FILES)
# stop, clean and logs see every service, whichever DB the stack was started with.
COMPOSE_ALL = $(COMPOSE_ENV) $(COMPOSE_BIN) -p $(COMPOSE_PROJECT) -f docker-compose.yml \
	-f docker/compose.postgres.yml --profile postgres
DOCKER_BUILD = $(DOCKER) build --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	$(if $(DOCKER_BUILD_NETWORK),--network $(DOCKER_BUILD_NETWORK))

.PHONY: docker/install docker/run docker/model_dummy docker/logs docker/stop docker/clean docker/test \
	docker/base docker/smoke docker/builder docker/prune

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

## docker/run: starts the stack in the background and waits until the api's health check passes
docker/run: docker/install $(ADMIN_TOKEN_FILE)
	$(COMPOSE) up -d
	@bash scripts/docker_wait_healthy.sh "$$($(COMPOSE) ps -q api)" $(DOCKER_WAIT)
	@echo "flight-delay API: http://127.0.0.1:$(ML_API_PORT)  (docs: http://127.0.0.1:$(ML_API_PORT)/docs)"
	@echo "POST /model/load/ needs: Authorization: Bearer \$$(cat $(ADMIN_TOKEN_FILE))"

# The production container refuses to start with open model upload: it gets a random admin token.
$(ADMIN_TOKEN_FILE):
	@mkdir -p $(dir $@)
	@umask 077 && python3 -c "import secrets; print(secrets.token_hex(32))" >$@
	@echo "made an admin token for POST /model/load/ in $@"

## docker/model_dummy: trains the dummy model inside the running api, then makes it the active model
docker/model_dummy:
	$(COMPOSE) exec -T api python src/model_dummy.py --out /data/model_dummy.pkl --seed $(SEED)
	$(COMPOSE) exec -T api flight-delay load /data/model_dummy.pkl

docker/logs:
	$(COMPOSE_ALL) logs --tail=200 $(if $(FOLLOW),--follow)

docker/stop:
	$(COMPOSE_ALL) down --remove-orphans

docker/clean:
	$(COMPOSE_ALL) down --remove-orphans --volumes

## docker/test: the tests (without the Spark pipeline's) inside the image, with no network but loopback
docker/test: docker/builder
	$(DOCKER_BUILD) --target test -t $(DOCKER_TEST_IMAGE) .
	@$(MAKE) --no-print-directory docker/prune
	$(DOCKER) run --rm --network none $(DOCKER_TEST_IMAGE)

docker/base:
	bash scripts/docker_base.sh $(LOCAL_BASE_IMAGE)

docker/smoke:
	bash scripts/docker_smoke.sh
