#!/usr/bin/env bash
# Waits for the scaled stack (docker/compose.scaled.yml) of compose project PROJECT:
#   scripts/docker_wait_scaled.sh [--ready] PROJECT URL REPLICAS [SECONDS]
# First, always: REPLICAS api containers running, each live (GET /health/live inside it), and the
# load balancer, at URL, answering GET /health/live (so it reaches a replica).
# Then, with --ready, or without it when the stack has an active model (GET /health/ through the
# balancer says model.loaded): the balancer answers GET /health/ready with 200, Docker's health check
# (readiness) says healthy for every replica, and HAProxy counts REPLICAS servers UP in its
# readiness-checked backend. Without a model (a fresh stack) it says how to load one and succeeds.
# Fails, with the logs of what is not ready, if the time (default 180 s) runs out or a container stops.
set -euo pipefail
want_ready=
if [[ ${1:-} == --ready ]]; then
    want_ready=1
    shift
fi
project=${1:?usage: docker_wait_scaled.sh [--ready] PROJECT URL REPLICAS [SECONDS]}
url=${2:?URL of the load balancer}
replicas=${3:?REPLICAS}
timeout=${4:-180}
deadline=$((SECONDS + timeout))

containers() {
    docker ps -aq --filter "label=com.docker.compose.project=$project" \
        --filter "label=com.docker.compose.service=$1"
}
# GET URL$1: the HTTP status in $code ("000" when nothing answers), the body in $body.
code=
body=
get() {
    local out
    out=$(curl -sS --max-time 5 -w '\n%{http_code}' "$url$1" 2>/dev/null) || true
    code=${out##*$'\n'}
    body=${out%$'\n'*}
    body=${body%$'\n'}
    [[ $code =~ ^[0-9]{3}$ ]] || code=000
}
# How many servers of HAProxy's readiness-checked backend are UP (its stats page, inside lb).
lb_ready_servers() {
    docker exec "$(containers lb | head -n 1)" python3 -c '
import csv, io, urllib.request
rows = csv.reader(io.StringIO(urllib.request.urlopen("http://127.0.0.1:8404/stats;csv", timeout=4).read().decode().lstrip("# ")))
head = next(rows)
print(sum(1 for r in rows if r[0] == "replicas_ready" and r[1] not in ("FRONTEND", "BACKEND")
          and r[head.index("status")].startswith("UP")))' 2>/dev/null || echo 0
}
give_up() {
    echo "docker_wait_scaled: $*" >&2
    for cid in $(containers api) $(containers lb); do
        echo "--- $(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$cid")" >&2
        docker inspect -f '{{if .State.Health}}{{range .State.Health.Log}}health check: {{.Output}}{{end}}{{end}}' \
            "$cid" 2>/dev/null | tail -n 2 >&2 || true
        docker logs --tail 15 "$cid" 2>&1 | sed 's/^/    /' >&2 || true
    done
    exit 1
}
check_running() {
    local cid state
    for cid in $(containers api) $(containers lb); do
        state=$(docker inspect -f '{{.State.Status}}' "$cid" 2>/dev/null || echo missing)
        [[ $state == running ]] || give_up "container $(docker inspect -f '{{.Name}}' "$cid" 2>/dev/null) is $state"
    done
}

# 1. Live: the replicas answer, and the balancer reaches one.
while :; do
    check_running
    mapfile -t api < <(containers api)
    live=0
    for cid in "${api[@]}"; do
        docker exec "$cid" python /app/docker/healthcheck.py live >/dev/null 2>&1 && live=$((live + 1))
    done
    get /health/live
    lb_live=$code
    if ((${#api[@]} == replicas && live == replicas)) && [[ $lb_live == 200 ]]; then
        break
    fi
    ((SECONDS < deadline)) || give_up "not live after ${timeout}s: ${#api[@]} api containers, $live live" \
        "(want $replicas); load balancer GET /health/live: $lb_live"
    sleep 1
done
echo "docker_wait_scaled: $replicas api replicas live; the load balancer answers at $url"

if [[ -z $want_ready ]]; then
    get /health/
    [[ $code == 200 ]] || give_up "GET /health/ through the load balancer: $body"
    loaded=$(python3 -c 'import json, sys; print(bool(json.loads(sys.argv[1])["model"]["loaded"]))' "$body")
    if [[ $loaded != True ]]; then
        get /health/ready
        echo "docker_wait_scaled: no active model, so no replica is ready ($body)"
        echo "docker_wait_scaled: load one through the balancer: make docker/load MODEL=path/to/model.pkl" \
            "(or make docker/model_dummy STACK=scaled)"
        exit 0
    fi
fi

# 2. Ready: the balancer, Docker's health checks and HAProxy's agree.
while :; do
    check_running
    mapfile -t api < <(containers api)
    healthy=0
    for cid in "${api[@]}"; do
        [[ $(docker inspect -f '{{.State.Health.Status}}' "$cid") == healthy ]] && healthy=$((healthy + 1))
    done
    get /health/ready
    lb_ready=$code
    up=$(lb_ready_servers)
    if [[ $lb_ready == 200 ]] && ((healthy == replicas && up == replicas)); then
        break
    fi
    ((SECONDS < deadline)) || give_up "not ready after ${timeout}s: $healthy of $replicas replicas healthy," \
        "$up UP in the balancer; GET /health/ready: $lb_ready $body"
    sleep 1
done
echo "docker_wait_scaled: ready: GET /health/ready 200 through the load balancer, $replicas replicas healthy" \
    "and UP in it"
