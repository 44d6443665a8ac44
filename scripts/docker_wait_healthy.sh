#!/usr/bin/env bash
# Waits until an api container is ready or live:
#   scripts/docker_wait_healthy.sh [--live] CONTAINER [SECONDS]
# By default: until Docker's health check (readiness: GET /health/ready) says healthy. A container
# without a model yet is not ready, and turns healthy at the first check after one is loaded, so
# "unhealthy" is waited out too; the time running out prints the health check's last answer.
# --live: until the process answers GET /health/live (docker exec healthcheck.py live), which a
# fresh container does before any model is loaded; then prints whether it is ready.
# Fails (with the container's last logs) if the container stops running or the time runs out.
set -euo pipefail
mode=ready
if [[ ${1:-} == --live ]]; then
    mode=live
    shift
fi
container=${1:?usage: docker_wait_healthy.sh [--live] CONTAINER [SECONDS]}
timeout=${2:-180}
deadline=$((SECONDS + timeout))

give_up() {
    echo "container ${container:0:12} $*" >&2
    docker inspect -f '{{if .State.Health}}{{range .State.Health.Log}}health check: {{.Output}}{{end}}{{end}}' \
        "$container" 2>/dev/null | tail -n 3 >&2 || true
    docker logs --tail 50 "$container" >&2 || true
    exit 1
}

while :; do
    state=$(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' \
        "$container" 2>/dev/null || echo "missing missing")
    case $state in
        running\ *) ;;
        *) give_up "is not running: $state" ;;
    esac
    if [[ $mode == live ]]; then
        if docker exec "$container" python /app/docker/healthcheck.py live >/dev/null 2>&1; then
            echo "container ${container:0:12} is live"
            docker exec "$container" python /app/docker/healthcheck.py ready || true
            exit 0
        fi
    else
        case $state in
            "running healthy")
                echo "container ${container:0:12} is healthy (ready)"
                exit 0 ;;
            "running none") give_up "has no health check" ;;
        esac
    fi
    ((SECONDS < deadline)) || give_up "not $mode after ${timeout}s (state: $state)"
    sleep 1
done
