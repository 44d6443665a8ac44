#!/usr/bin/env bash
# Waits until a container's health check says healthy: scripts/docker_wait_healthy.sh CONTAINER [SECONDS]
# Fails (with the container's last logs) if it exits, turns unhealthy, or the time runs out.
set -euo pipefail
container=${1:?usage: docker_wait_healthy.sh CONTAINER [SECONDS]}
timeout=${2:-180}
deadline=$((SECONDS + timeout))
while :; do
    state=$(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' \
        "$container" 2>/dev/null || echo "missing missing")
    case $state in
        "running healthy")
            echo "container ${container:0:12} is healthy"
            exit 0 ;;
        "running none")
            echo "container ${container:0:12} has no health check" >&2
            exit 1 ;;
        "running starting") ;;
        *)
            echo "container ${container:0:12} is not healthy: $state" >&2
            docker logs --tail 50 "$container" >&2 || true
            exit 1 ;;
    esac
    if ((SECONDS >= deadline)); then
        echo "container ${container:0:12} not healthy after ${timeout}s" >&2
        docker logs --tail 50 "$container" >&2 || true
        exit 1
    fi
    sleep 1
done
