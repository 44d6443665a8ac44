#!/usr/bin/env bash
# The container proof, as a user would do it, every answer checked:
#   1. apt:       docker.io, docker-compose, debootstrap, if missing (needs root)
#   2. dockerd:   starts one (vfs, no iptables, no default bridge) if no engine answers
#   3. base:      a local Debian bookworm base image by debootstrap (cached), since Docker Hub may be
#                 unreachable; SMOKE_BASE_IMAGE=python:3.11-slim uses that instead
#   4. build:     make docker/install with that base (builds use the host network), after checking that
#                 docker's storage has SMOKE_MIN_FREE_GB free (default 8: on vfs every layer is a full
#                 copy); no untagged image of this Dockerfile may be left behind (make docker/prune)
#   5. smoke:     make docker/run, then over 127.0.0.1 only: health, make docker/model_dummy, predict
#                 one and a batch of 3, the history, an upload without the admin token refused (401), a bad
#                 upload refused (400), a restart that keeps the model
#                 and the history; non-root, gunicorn as PID 1, docker's health check healthy
# Cleans up what it started (its compose project's containers, network and volumes; a dockerd it
# started, unless KEEP_DOCKERD=1), keeps the images as a cache, exits non-zero on the first failure.
#
#   bash scripts/docker_smoke.sh          (or make docker/smoke)
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT=${SMOKE_PROJECT:-flight-delay-smoke}
LOCAL_BASE_IMAGE=${LOCAL_BASE_IMAGE:-flight-delay-base:bookworm}
BASE=${SMOKE_BASE_IMAGE:-$LOCAL_BASE_IMAGE}
IMAGE=${DOCKER_IMAGE:-flight-delay:latest}
WORK=$(mktemp -d /tmp/flight-delay-smoke.XXXXXX)
DOCKERD_LOG=${DOCKERD_LOG:-/tmp/flight-delay-dockerd.log}
DOCKERD_PID=
STACK_UP=
declare -a TIMINGS=()

PASSED=0
say() { printf '\n== %s\n' "$*"; }
ok() {
    PASSED=$((PASSED + 1))
    echo "ok: $*"
}
fail() {
    printf '\nSMOKE FAILED: %s\n' "$*" >&2
    exit 1
}
phase_start() {
    PHASE=$1
    PHASE_T0=$(date +%s.%N)
    say "$PHASE"
}
phase_end() {
    local note=${1:-}
    TIMINGS+=("$(awk -v t0="$PHASE_T0" -v t1="$(date +%s.%N)" -v p="$PHASE" -v n="$note" \
        'BEGIN { printf "%-8s %7.1f s %s", p, t1 - t0, n }')")
}
print_timings() {
    if ((${#TIMINGS[@]})); then
        printf '\nphase timings:\n'
        printf '  %s\n' "${TIMINGS[@]}"
    fi
}

# make with the smoke's project, port, base and image: the same targets a user runs.
mk() {
    make --no-print-directory "$@" COMPOSE_PROJECT="$PROJECT" ML_API_PORT="$PORT" BASE_IMAGE="$BASE" \
        DOCKER_IMAGE="$IMAGE" DOCKER_BUILD_NETWORK=host
}

cleanup() {
    local status=$?
    set +e
    if [[ -n $STACK_UP ]]; then
        if ((status != 0)); then
            say "logs of the failed run"
            mk docker/logs 2>&1 | tail -n 80
        fi
        say "cleanup: containers, network and volumes of compose project $PROJECT"
        mk docker/clean >/dev/null 2>&1 || echo "cleanup of $PROJECT failed" >&2
    fi
    if [[ -n $DOCKERD_PID && -z ${KEEP_DOCKERD:-} ]]; then
        say "cleanup: stopping the dockerd this script started (pid $DOCKERD_PID)"
        kill "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
    fi
    rm -rf "$WORK"
    print_timings
    if ((status == 0)); then
        echo "SMOKE PASSED"
        echo "docker_smoke: $PASSED passed, 0 failed"
    else
        echo "SMOKE FAILED (exit $status)" >&2
        echo "docker_smoke: $PASSED passed, 1 failed"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. packages -------------------------------------------------------------------------------
phase_start apt
missing=()
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
    missing+=(docker-compose)
fi
if [[ -z ${SMOKE_BASE_IMAGE:-} ]] && ! command -v debootstrap >/dev/null 2>&1; then missing+=(debootstrap); fi
command -v curl >/dev/null 2>&1 || missing+=(curl)
if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || fail "missing ${missing[*]}: run as root or install them"
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    echo "installing ${missing[*]}"
    apt-get update -q >"$WORK/apt.log" 2>&1 || { tail -n 20 "$WORK/apt.log"; fail "apt-get update"; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >>"$WORK/apt.log" 2>&1 \
        || { tail -n 30 "$WORK/apt.log"; fail "apt-get install ${missing[*]}"; }
    phase_end "(installed ${missing[*]})"
else
    echo "docker, compose, debootstrap, curl: present"
    phase_end "(nothing to install)"
fi
command -v python3 >/dev/null 2>&1 || fail "python3 is needed on the host to check the JSON answers"

# --- 2. the engine -----------------------------------------------------------------------------
phase_start dockerd
if docker info >/dev/null 2>&1; then
    echo "a docker engine answers: using it"
    phase_end "(already running)"
else
    [[ $(id -u) == 0 ]] || fail "no docker engine answers and this is not root: start one"
    echo "starting dockerd (vfs, no iptables, no default bridge); log: $DOCKERD_LOG"
    setsid dockerd --storage-driver=vfs --iptables=false --ip6tables=false --bridge=none \
        >"$DOCKERD_LOG" 2>&1 </dev/null &
    DOCKERD_PID=$!
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -n 30 "$DOCKERD_LOG"; fail "dockerd exited"; }
        sleep 1
    done
    docker info >/dev/null 2>&1 || { tail -n 30 "$DOCKERD_LOG"; fail "dockerd did not answer in 60 s"; }
    phase_end "(started, pid $DOCKERD_PID)"
fi

# --- 3. the base image -------------------------------------------------------------------------
phase_start base
if [[ -n ${SMOKE_BASE_IMAGE:-} ]]; then
    echo "base image: $BASE (SMOKE_BASE_IMAGE)"
    phase_end "($BASE)"
elif docker image inspect "$BASE" >/dev/null 2>&1; then
    echo "base image $BASE: cached"
    phase_end "(cached $BASE)"
else
    bash scripts/docker_base.sh "$BASE" || fail "building the base image $BASE"
    phase_end "(debootstrap $BASE)"
fi

# --- 4. the image ------------------------------------------------------------------------------
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
phase_start build
# Measured: a build from an empty cache, the stack and docker/test take 7.5 GB at their peak on vfs.
# Failing here says why; running out midway fails some later step with "no space left on device".
DOCKER_ROOT=$(docker info -f '{{.DockerRootDir}}' 2>/dev/null || true)
if [[ -n $DOCKER_ROOT && -d $DOCKER_ROOT ]]; then
    free_gb=$(df -P -BG "$DOCKER_ROOT" | awk 'NR == 2 { sub("G", "", $4); print $4 }')
    echo "docker's storage $DOCKER_ROOT: $free_gb GB free"
    ((free_gb >= ${SMOKE_MIN_FREE_GB:-8})) || fail "only $free_gb GB free under $DOCKER_ROOT, \
needs ${SMOKE_MIN_FREE_GB:-8} GB: make docker/prune removes this project's untagged images, \
docker system df shows the rest"
fi
mk docker/install >"$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log"; fail "make docker/install"; }
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
SIZE_MB=$(python3 -c "print(f'{$size / 1e6:.0f} MB')")
echo "image $IMAGE: $SIZE_MB (FROM $BASE)"
untagged=$(docker images -q --filter dangling=true --filter label=org.opencontainers.image.title=flight-delay)
[[ -z $untagged ]] || fail "make docker/install left untagged flight-delay images: $(echo $untagged)"
ok "no untagged flight-delay image left behind (docker/prune)"
phase_end "($IMAGE, $SIZE_MB)"

# --- 5. the user's flow ------------------------------------------------------------------------
phase_start smoke
# A clean slate: a previous run's containers or volumes of this project would change the history.
STACK_UP=1
mk docker/clean >/dev/null 2>&1 || true

# request NAME METHOD PATH [curl args...]: the status code in $WORK/NAME.code, the body in NAME.json
request() {
    local name=$1 method=$2 path=$3
    shift 3
    curl -sS -o "$WORK/$name.json" -w '%{http_code}' -X "$method" --max-time 60 "$@" "$URL$path" \
        >"$WORK/$name.code" || fail "$name: $method $path did not answer"
}
# check NAME STATUS PYTHON-EXPRESSION: the status code, then the expression over `body` (the JSON) and
# `state` (values remembered by earlier checks); prints what the expression returns.
check() {
    local name=$1 status=$2 expr=$3
    local got
    got=$(cat "$WORK/$name.code")
    [[ $got == "$status" ]] || fail "$name: HTTP $got, expected $status: $(head -c 600 "$WORK/$name.json")"
    python3 - "$WORK/$name.json" "$WORK/state.json" "$expr" <<'PY' || fail "$name: $(head -c 800 "$WORK/$name.json")"
import json, math, sys
body = json.load(open(sys.argv[1]))
try:
    state = json.load(open(sys.argv[2]))
except FileNotFoundError:
    state = {}
result = eval("(" + sys.argv[3] + ")", {"math": math, "body": body, "state": state})
if not result:
    sys.exit(f"check failed: {sys.argv[3]}")
if result is not True:
    print(result)
PY
    ok "$name"
}
remember() { python3 - "$WORK/state.json" "$1" "$2" <<'PY'
import json, sys
try:
    state = json.load(open(sys.argv[1]))
except FileNotFoundError:
    state = {}
state[sys.argv[2]] = json.loads(sys.argv[3])
json.dump(state, open(sys.argv[1], "w"))
PY
}

mk docker/run || fail "make docker/run"
CID=$(docker ps -q --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=api")
[[ -n $CID ]] || fail "no api container in compose project $PROJECT"

request health1 GET /health/
check health1 200 'body["status"] in ("no_model", "ok") and body["database"]["ok"]'

say "make docker/model_dummy"
mk docker/model_dummy >"$WORK/model_dummy.log" 2>&1 || { cat "$WORK/model_dummy.log"; fail "make docker/model_dummy"; }
grep -E '^wrote /data/model_dummy.pkl' "$WORK/model_dummy.log" || fail "model_dummy.py wrote nothing"
loaded=$(grep -E '^\{"version"' "$WORK/model_dummy.log" | tail -n 1)
[[ -n $loaded ]] || { cat "$WORK/model_dummy.log"; fail "flight-delay load printed no version"; }
remember version "$(python3 -c 'import json, sys; print(json.dumps(json.loads(sys.argv[1])["version"]))' "$loaded")"
echo "loaded: $loaded"

request health2 GET /health/
check health2 200 'body["status"] == "ok" and body["model"]["loaded"] and body["model"]["version"] == state["version"]'

FLIGHT='{"year": 2013, "month": 1, "day": 1, "sched_dep_time": 515, "sched_arr_time": 819, "dep_delay": 2, "distance": 1400, "carrier": "UA", "origin": "EWR", "dest": "IAH"}'
request predict1 POST /model/predict/ -H 'Content-Type: application/json' -H 'X-Request-ID: smoke-1' -d "$FLIGHT"
check predict1 200 'body["model_version"] == state["version"] and body["request_id"] == "smoke-1"
    and len(body["predictions"]) == 1 and isinstance(body["predictions"][0]["history_id"], int)
    and math.isfinite(body["predictions"][0]["arr_delay"])'
remember ids1 "$(python3 -c 'import json; print(json.dumps([p["history_id"] for p in json.load(open("'"$WORK"'/predict1.json"))["predictions"]]))')"

BATCH='{"flights": [
  {"year": 2013, "month": 12, "day": 24, "sched_dep_time": 1830, "sched_arr_time": 2145, "dep_delay": 95, "distance": 2475, "carrier": "AA", "origin": "JFK", "dest": "LAX"},
  {"year": 2013, "month": 7, "day": 4, "sched_dep_time": 700, "sched_arr_time": 1005, "dep_delay": null, "distance": 762, "carrier": "DL", "origin": "LGA", "dest": "ATL"},
  {"year": 2013, "month": 3, "day": 15, "sched_dep_time": 1200, "sched_arr_time": 1500, "dep_delay": -3, "distance": 1065, "carrier": "B6", "origin": "JFK", "dest": "MCO"}]}'
request predict3 POST /model/predict/ -H 'Content-Type: application/json' -H 'X-Request-ID: smoke-2' -d "$BATCH"
check predict3 200 'body["model_version"] == state["version"] and len(body["predictions"]) == 3
    and all(math.isfinite(p["arr_delay"]) for p in body["predictions"])
    and len({p["history_id"] for p in body["predictions"]} | set(state["ids1"])) == 4
    and body["predictions"][0]["arr_delay"] > body["predictions"][2]["arr_delay"]'
remember ids "$(python3 -c 'import json; w="'"$WORK"'"; print(json.dumps(sorted([p["history_id"] for f in ("predict1", "predict3") for p in json.load(open(f"{w}/{f}.json"))["predictions"]])))')"

request history1 GET '/model/history/?page_size=50'
check history1 200 'body["total"] == 4 and sorted(i["id"] for i in body["items"]) == state["ids"]
    and all(i["model_version"] == state["version"] for i in body["items"])
    and sorted(i["request_id"] for i in body["items"]) == ["smoke-1", "smoke-2", "smoke-2", "smoke-2"]'

echo "not a model" >"$WORK/not-a-model.pkl"
request noauth POST /model/load/ -F "file=@$WORK/not-a-model.pkl"
check noauth 401 'body["status"] == 401 and body["code"] == "unauthorized"'
TOKEN=$(cat var/admin_token)
request badload POST /model/load/ -H 'X-Request-ID: smoke-bad' -H "Authorization: Bearer $TOKEN" \
    -F "file=@$WORK/not-a-model.pkl"
check badload 400 'body["status"] == 400 and body["code"] == "invalid_artifact" and body["request_id"] == "smoke-bad"'
request model1 GET /model/
check model1 200 'body["version"] == state["version"]'

say "the container"
user=$(docker exec "$CID" id -u)
[[ $user != 0 ]] || fail "the api runs as root"
ok "runs as uid $user ($(docker inspect -f '{{.Config.User}}' "$CID"))"
pid1=$(docker exec "$CID" cat /proc/1/cmdline | tr '\0' ' ')
[[ $pid1 == *"flight-delay serve"* ]] || fail "PID 1 is not flight-delay serve (gunicorn's master): $pid1"
ok "PID 1 is: $pid1"
health=$(docker inspect -f '{{.State.Health.Status}}' "$CID")
[[ $health == healthy ]] || fail "docker's health check says $health"
ok "docker inspect: health $health, restart policy $(docker inspect -f '{{.HostConfig.RestartPolicy.Name}}' "$CID")"
mk docker/logs >"$WORK/logs.txt" 2>&1 || fail "make docker/logs"
grep -q 'request_id=smoke-1' "$WORK/logs.txt" || fail "make docker/logs does not show request smoke-1"
ok "make docker/logs shows the requests"

say "restart the container"
docker restart "$CID" >/dev/null || fail "docker restart"
bash scripts/docker_wait_healthy.sh "$CID" 180 || fail "not healthy after the restart"
request health3 GET /health/
check health3 200 'body["status"] == "ok" and body["model"]["version"] == state["version"]'
request history2 GET '/model/history/?page_size=50'
check history2 200 'body["total"] == 4 and sorted(i["id"] for i in body["items"]) == state["ids"]'

say "make docker/stop"
mk docker/stop >/dev/null 2>&1 || fail "make docker/stop"
[[ -z $(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT") ]] \
    || fail "containers of $PROJECT remain after make docker/stop"
ok "no container left"
phase_end "(model $(python3 -c 'import json; print(json.load(open("'"$WORK"'/state.json"))["version"][:12])'))"

# --- 6. the test suite inside the image --------------------------------------------------------
if [[ -z ${SMOKE_SKIP_TESTS:-} ]]; then
    phase_start tests
    mk docker/test >"$WORK/tests.log" 2>&1 || { tail -n 60 "$WORK/tests.log"; fail "make docker/test"; }
    summary=$(grep -E '^=+ .*(passed|failed).* =+$' "$WORK/tests.log" | tail -n 1)
    [[ $summary == *passed* && $summary != *failed* && $summary != *error* ]] \
        || { tail -n 60 "$WORK/tests.log"; fail "make docker/test: $summary"; }
    ok "make docker/test: $summary"
    phase_end "($(echo "$summary" | tr -d '=' | xargs))"
fi

say "image $IMAGE: $SIZE_MB"
