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
#                 one and a batch of 3, the history (401 without a token: production reads need a reader
#                 or admin token), an upload without the admin token refused (401), a bad
#                 upload refused (400), a restart that keeps the model
#                 and the history; non-root, gunicorn as PID 1, docker's health check (readiness) healthy
#   6. scaled:    make docker/run-scaled REPLICAS=3 (PostgreSQL, a migrate step, 3 api replicas sharing no
#                 disk, HAProxy in front): replicas live, no port, no volume; the balancer's answers
#                 before a model; make docker/model_dummy STACK=scaled through the balancer, all ready;
#                 each replica called directly serves it; a second model uploaded through the balancer
#                 reaches every replica within seconds; 30 predictions through the balancer, all in
#                 the one history, answered by more than one replica; a restarted replica (empty
#                 cache) serves the active model; make docker/stop, docker/clean leave nothing
#   7. tests:     make docker/test, the tests of what the image decides (Dockerfile) (SMOKE_SKIP_TESTS=1 skips it)
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
mk docker/install docker/install-stack >"$WORK/build.log" 2>&1 \
    || { tail -n 40 "$WORK/build.log"; fail "make docker/install docker/install-stack"; }
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
SIZE_MB=$(python3 -c "print(f'{$size / 1e6:.0f} MB')")
echo "image $IMAGE: $SIZE_MB (FROM $BASE)"
for stack_image in flight-delay-postgres:latest flight-delay-haproxy:latest; do
    echo "image $stack_image: $(docker image inspect -f '{{.Size}}' "$stack_image" | awk '{printf "%.0f MB", $1/1e6}')"
done
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
check health1 200 'body["status"] == "ok" and body["database"]["ok"] and not body["model"]["loaded"]'
# Live but not ready without a model: Docker's health check (readiness) is not healthy yet.
request ready0 GET /health/ready
check ready0 503 'body["code"] == "not_ready" and body["status"] == 503'
request live0 GET /health/live
check live0 200 'body["status"] == "ok"'
[[ $(docker inspect -f '{{.State.Health.Status}}' "$CID") != healthy ]] || fail "healthy without a model"
ok "without a model: live, not ready, not healthy ($(docker inspect -f '{{.State.Health.Status}}' "$CID"))"

say "make docker/model_dummy"
mk docker/model_dummy >"$WORK/model_dummy.log" 2>&1 || { cat "$WORK/model_dummy.log"; fail "make docker/model_dummy"; }
grep -E '^wrote /data/model_dummy.pkl' "$WORK/model_dummy.log" || fail "model_dummy.py wrote nothing"
loaded=$(grep -E '^\{"version"' "$WORK/model_dummy.log" | tail -n 1)
[[ -n $loaded ]] || { cat "$WORK/model_dummy.log"; fail "flight-delay load printed no version"; }
remember version "$(python3 -c 'import json, sys; print(json.dumps(json.loads(sys.argv[1])["version"]))' "$loaded")"
echo "loaded: $loaded"

request health2 GET /health/
check health2 200 'body["status"] == "ok" and body["model"]["loaded"] and body["model"]["version"] == state["version"]'
request ready1 GET /health/ready
check ready1 200 'body["status"] == "ready" and body["model_version"] == state["version"]'
[[ $(docker inspect -f '{{.State.Health.Status}}' "$CID") == healthy ]] \
    || fail "make docker/model_dummy returned before Docker's health check said healthy"
ok "make docker/model_dummy waited until Docker's health check (readiness) said healthy"

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

TOKEN=$(cat var/admin_token)
request nohistory GET '/model/history/?page_size=50'
check nohistory 401 'body["status"] == 401 and body["code"] == "unauthorized"'
request history1 GET '/model/history/?page_size=50' -H "Authorization: Bearer $TOKEN"
check history1 200 'body["total"] == 4 and sorted(i["id"] for i in body["items"]) == state["ids"]
    and all(i["model_version"] == state["version"] for i in body["items"])
    and sorted(i["request_id"] for i in body["items"]) == ["smoke-1", "smoke-2", "smoke-2", "smoke-2"]'

echo "not a model" >"$WORK/not-a-model.pkl"
request noauth POST /model/load/ -F "file=@$WORK/not-a-model.pkl"
check noauth 401 'body["status"] == 401 and body["code"] == "unauthorized"'
request badload POST /model/load/ -H 'X-Request-ID: smoke-bad' -H "Authorization: Bearer $TOKEN" \
    -F "file=@$WORK/not-a-model.pkl"
check badload 400 'body["status"] == 400 and body["code"] == "invalid_artifact" and body["request_id"] == "smoke-bad"'
request model1 GET /model/ -H "Authorization: Bearer $TOKEN"
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
request history2 GET '/model/history/?page_size=50' -H "Authorization: Bearer $TOKEN"
check history2 200 'body["total"] == 4 and sorted(i["id"] for i in body["items"]) == state["ids"]'

say "make docker/stop"
mk docker/stop >/dev/null 2>&1 || fail "make docker/stop"
[[ -z $(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT") ]] \
    || fail "containers of $PROJECT remain after make docker/stop"
ok "no container left"
phase_end "(model $(python3 -c 'import json; print(json.load(open("'"$WORK"'/state.json"))["version"][:12])'))"

# --- 6. the scaled stack: PostgreSQL, 3 replicas sharing no disk, HAProxy in front -----------------
phase_start scaled
SCALED=$PROJECT-scaled
REPLICAS=3
scaled_ids() {
    docker ps -aq --filter "label=com.docker.compose.project=$SCALED" --filter "label=com.docker.compose.service=$1"
}
# in_replica CID NAME METHOD PATH [JSON] [REQUEST-ID]: calls the replica directly (127.0.0.1:8000 inside
# it: replicas publish no port); the status code in $WORK/NAME.code, the body in NAME.json, as request.
in_replica() {
    local cid=$1 name=$2 method=$3 path=$4 data=${5:-} rid=${6:-}
    printf '%s' "$data" | docker exec -i -e SMOKE_TOKEN="$TOKEN" "$cid" python -c '
import os, sys, urllib.error, urllib.request
method, path, rid = sys.argv[1:4]
data = sys.stdin.buffer.read() if method == "POST" else None
headers = {"Content-Type": "application/json", **({"X-Request-ID": rid} if rid else {})}
headers["Authorization"] = "Bearer " + os.environ["SMOKE_TOKEN"]  # production reads need a token
request = urllib.request.Request("http://127.0.0.1:8000" + path, data=data, method=method, headers=headers)
try:
    with urllib.request.urlopen(request, timeout=30) as response:
        status, body = response.status, response.read()
except urllib.error.HTTPError as exc:
    status, body = exc.code, exc.read()
sys.stdout.buffer.write(body)
sys.stderr.write(str(status))' "$method" "$path" "$rid" >"$WORK/$name.json" 2>"$WORK/$name.code" \
        || fail "$name: $method $path inside ${cid:0:12}: $(cat "$WORK/$name.code")"
}
# The servers HAProxy counts UP in BACKEND (replicas_ready or replicas_live), from its stats page.
lb_up() {
    docker exec "$(scaled_ids lb)" python3 -c '
import csv, io, sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:8404/stats;csv", timeout=4).read().decode()
rows = list(csv.reader(io.StringIO(text.lstrip("# "))))
status = rows[0].index("status")
print(sum(1 for r in rows[1:] if r[0] == sys.argv[1] and r[1] not in ("FRONTEND", "BACKEND")
          and r[status].startswith("UP")))' "$1"
}

# each_replica_serves vN: every replica, called directly, answers GET /model/ and a prediction with
# the model remembered as vN (the checks are named rKmodelN and rKpredictN, request ids direct-vN-K).
each_replica_serves() {
    local key=$1 n=0 cid
    for cid in "${REPLICA_IDS[@]}"; do
        n=$((n + 1))
        in_replica "$cid" "r${n}model${key#v}" GET /model/
        check "r${n}model${key#v}" 200 "body['version'] == state['$key']"
        in_replica "$cid" "r${n}predict${key#v}" POST /model/predict/ "$FLIGHT" "direct-$key-$n"
        check "r${n}predict${key#v}" 200 "body['model_version'] == state['$key'] and isinstance(body['predictions'][0]['history_id'], int)"
    done
}

mk docker/run-scaled REPLICAS=$REPLICAS >"$WORK/run-scaled.log" 2>&1 \
    || { tail -n 60 "$WORK/run-scaled.log"; fail "make docker/run-scaled REPLICAS=$REPLICAS"; }
grep -E '^docker_wait_scaled' "$WORK/run-scaled.log"
mapfile -t REPLICA_IDS < <(scaled_ids api)
((${#REPLICA_IDS[@]} == REPLICAS)) || fail "$SCALED has ${#REPLICA_IDS[@]} api containers, not $REPLICAS"
for cid in "${REPLICA_IDS[@]}"; do
    [[ $(docker inspect -f '{{.State.Status}}' "$cid") == running ]] || fail "replica ${cid:0:12} is not running"
    docker exec "$cid" python /app/docker/healthcheck.py live >/dev/null || fail "replica ${cid:0:12} is not live"
    [[ -z $(docker port "$cid") ]] || fail "replica ${cid:0:12} publishes a port: $(docker port "$cid")"
    mounts=$(docker inspect -f '{{range .Mounts}}{{.Type}}:{{.Destination}} {{end}}' "$cid")
    [[ $mounts != *volume* && $mounts != *bind* ]] || fail "replica ${cid:0:12} mounts $mounts"
    [[ $(docker inspect -f '{{json .HostConfig.Tmpfs}}' "$cid") == *'"/data"'* ]] \
        || fail "replica ${cid:0:12}: /data is not its own tmpfs"
    [[ $(docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$cid") == *MIGRATE_AT_START=false* ]] \
        || fail "replica ${cid:0:12} migrates at start"
done
ok "$REPLICAS api replicas running and live, no published port, no volume (/data: a tmpfs each)"
migrate=$(scaled_ids migrate)
[[ -n $migrate && $(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$migrate") == "exited 0" ]] \
    || fail "the migrate step did not exit 0: $(docker logs --tail 20 "$migrate" 2>&1)"
docker logs "$migrate" 2>&1 | grep -E '^upgraded ' || fail "the migrate step printed no 'upgraded'"
ok "flight-delay migrate ran once as the release step (exit 0); the replicas do not migrate"
# A fresh stack has no model: no replica is ready, and the balancer falls back to the live ones, so
# the answer is the app's own 503 (and the admin's upload reaches a replica).
request sready0 GET /health/ready
check sready0 503 'body["code"] == "not_ready" and body["status"] == 503'
request slive0 GET /health/live
check slive0 200 'body["status"] == "ok"'
[[ $(lb_up replicas_ready) == 0 && $(lb_up replicas_live) == "$REPLICAS" ]] \
    || fail "HAProxy before a model: $(lb_up replicas_ready) ready, $(lb_up replicas_live) live (want 0, $REPLICAS)"
ok "HAProxy before a model: 0 replicas ready, $REPLICAS live"
request snoauth POST /model/load/ -F "file=@$WORK/not-a-model.pkl"
check snoauth 401 'body["code"] == "unauthorized"'

say "make docker/model_dummy STACK=scaled (trains in a replica, uploads through the balancer, waits)"
mk docker/model_dummy STACK=scaled SEED=0 >"$WORK/model_scaled.log" 2>&1 \
    || { cat "$WORK/model_scaled.log"; fail "make docker/model_dummy STACK=scaled"; }
loaded=$(grep -E '^\{"' "$WORK/model_scaled.log" | tail -n 1)
[[ -n $loaded ]] || { cat "$WORK/model_scaled.log"; fail "the upload through the balancer printed no answer"; }
remember v1 "$(python3 -c 'import json, sys; print(json.dumps(json.loads(sys.argv[1])["version"]))' "$loaded")"
grep -E '^docker_wait_scaled: ready' "$WORK/model_scaled.log" || fail "make docker/model_dummy did not wait for ready"
request sready1 GET /health/ready
check sready1 200 'body["status"] == "ready" and body["model_version"] == state["v1"]'
for cid in "${REPLICA_IDS[@]}"; do
    [[ $(docker inspect -f '{{.State.Health.Status}}' "$cid") == healthy ]] || fail "replica ${cid:0:12} is not healthy"
done
[[ $(lb_up replicas_ready) == "$REPLICAS" ]] || fail "HAProxy counts $(lb_up replicas_ready) ready, not $REPLICAS"
ok "all $REPLICAS replicas healthy (Docker's readiness check) and UP in HAProxy's readiness-checked backend"
each_replica_serves v1

say "a second model through the balancer: every replica serves it within seconds"
docker exec "${REPLICA_IDS[1]}" python src/model_dummy.py --out /tmp/model_v2.pkl --seed 1 \
    || fail "training the second model in a replica"
docker cp "${REPLICA_IDS[1]}:/tmp/model_v2.pkl" "$WORK/model_v2.pkl" >/dev/null && docker exec "${REPLICA_IDS[1]}" rm /tmp/model_v2.pkl
# How soon each replica serves it: a poller inside a replica calls all three by their container
# address (not through the balancer) every 50 ms, noting when each first answers another version.
mapfile -t REPLICA_IPS < <(for cid in "${REPLICA_IDS[@]}"; do
    docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$cid"; done)
V1=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["v1"])' "$WORK/state.json")
docker exec -e SMOKE_TOKEN="$TOKEN" "${REPLICA_IDS[2]}" python -c '
import json, os, sys, time, urllib.request
v1, ips = sys.argv[1], sys.argv[2:]
auth = {"Authorization": "Bearer " + os.environ["SMOKE_TOKEN"]}
first = {}
print("polling", flush=True, file=sys.stderr)
deadline = time.time() + 20
while len(first) < len(ips) and time.time() < deadline:
    for ip in ips:
        if ip not in first:
            try:
                asked = urllib.request.Request(f"http://{ip}:8000/model/", headers=auth)
                with urllib.request.urlopen(asked, timeout=2) as response:
                    version = json.load(response)["version"]
            except Exception:
                continue
            if version != v1:
                first[ip] = [time.time(), version]
    time.sleep(0.05)
print(json.dumps(first))' "$V1" "${REPLICA_IPS[@]}" >"$WORK/propagation.json" 2>"$WORK/poller.err" &
POLLER=$!
for _ in $(seq 100); do grep -q polling "$WORK/poller.err" 2>/dev/null && break; sleep 0.1; done
grep -q polling "$WORK/poller.err" || fail "the propagation poller did not start: $(cat "$WORK/poller.err")"
request sload2 POST /model/load/ -H "Authorization: Bearer $TOKEN" -H 'X-Request-ID: scaled-load-2' \
    -F "file=@$WORK/model_v2.pkl"
loaded_at=$(date +%s.%N)
check sload2 201 'body["version"] != state["v1"]'
remember v2 "$(python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))["version"]))' "$WORK/sload2.json")"
V2=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["v2"])' "$WORK/state.json")
wait "$POLLER" || fail "the propagation poller failed: $(cat "$WORK/poller.err")"
# Seconds from the upload's answer to each replica's first answer with it (<= 0: before the answer).
switched=$(python3 - "$WORK/propagation.json" "$loaded_at" "$V2" "${REPLICA_IPS[@]}" <<'PY'
import json, sys
first, loaded_at, v2, ips = json.load(open(sys.argv[1])), float(sys.argv[2]), sys.argv[3], sys.argv[4:]
missing = [ip for ip in ips if ip not in first or first[ip][1] != v2]
if missing:
    sys.exit(f"not serving {v2[:12]} 20 s after the upload: {missing} ({first})")
delays = [first[ip][0] - loaded_at for ip in ips]
if max(delays) > 5:
    sys.exit(f"a replica took more than 5 s: {delays}")
print(" ".join(f"{d:.2f}" for d in delays))
PY
) || fail "the new model did not reach every replica"
each_replica_serves v2
ok "each replica, called directly, serves ${V2:0:12}: first answered with it $switched s after the upload's answer"

say "30 predictions through the balancer, then the one history"
for i in $(seq 30); do
    request "lb$i" POST /model/predict/ -H 'Content-Type: application/json' -H "X-Request-ID: scaled-$i" -d "$FLIGHT"
done
python3 - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
codes = [int(open(f"{w}/lb{i}.code").read()) for i in range(1, 31)]
answers = [json.load(open(f"{w}/lb{i}.json")) for i in range(1, 31)]
json.dump({"codes": codes, "answers": answers}, open(f"{w}/lb30.json", "w"))
open(f"{w}/lb30.code", "w").write("200")
PY
check lb30 200 'all(c == 200 for c in body["codes"])
    and all(a["model_version"] == state["v2"] and a["request_id"] == f"scaled-{i + 1}" and len(a["predictions"]) == 1
            for i, a in enumerate(body["answers"]))
    and len({a["predictions"][0]["history_id"] for a in body["answers"]}) == 30'
remember answered "$(python3 - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
ids = {p["history_id"]: a["request_id"] for a in json.load(open(f"{w}/lb30.json"))["answers"] for p in a["predictions"]}
for name in [f"r{n}predict{v}" for n in (1, 2, 3) for v in (1, 2)]:
    a = json.load(open(f"{w}/{name}.json"))
    ids.update({p["history_id"]: a["request_id"] for p in a["predictions"]})
print(json.dumps({str(k): v for k, v in ids.items()}))
PY
)"
request shistory GET '/model/history/?page_size=500' -H "Authorization: Bearer $TOKEN"
check shistory 200 'body["total"] == len(state["answered"]) == 36
    and {str(i["id"]): i["request_id"] for i in body["items"]} == state["answered"]
    and all(i["model_version"] == (state["v1"] if i["request_id"].startswith("direct-v1") else state["v2"])
            for i in body["items"])'
# Which replica answered each request: every replica's own access log (request_id=...).
declare -a served=()
for cid in "${REPLICA_IDS[@]}"; do
    docker logs "$cid" 2>&1 | grep -oE 'request_id=scaled-[0-9]+( |$)' | sed 's/request_id=//; s/ $//' >"$WORK/served-${cid:0:12}.txt" || true
    served+=("$(wc -l <"$WORK/served-${cid:0:12}.txt")")
done
python3 - "$WORK" "${REPLICA_IDS[@]}" <<'PY' || fail "the replicas' logs do not account for the 30 requests: ${served[*]}"
import sys
w, cids = sys.argv[1], sys.argv[2:]
seen = [line.strip() for cid in cids for line in open(f"{w}/served-{cid[:12]}.txt") if line.strip()]
assert sorted(seen) == sorted(f"scaled-{i}" for i in range(1, 31)), seen
assert sum(1 for cid in cids if open(f"{w}/served-{cid[:12]}.txt").read().strip()) > 1
PY
ok "the 30 requests were answered once each, by more than one replica: ${served[*]} (replicas' logs)"

say "a replica restarted: its cache (tmpfs) is gone, it serves the active model from the database"
docker restart "${REPLICA_IDS[0]}" >/dev/null || fail "docker restart"
bash scripts/docker_wait_healthy.sh "${REPLICA_IDS[0]}" 180 || fail "replica not healthy after the restart"
in_replica "${REPLICA_IDS[0]}" r1model3 GET /model/
check r1model3 200 'body["version"] == state["v2"]'
mk docker/wait STACK=scaled >"$WORK/wait-scaled.log" 2>&1 || { cat "$WORK/wait-scaled.log"; fail "make docker/wait"; }
ok "$(tail -n 1 "$WORK/wait-scaled.log")"

say "make docker/stop, make docker/clean"
mk docker/stop >/dev/null 2>&1 || fail "make docker/stop"
[[ -z $(docker ps -aq --filter "label=com.docker.compose.project=$SCALED") ]] \
    || fail "containers of $SCALED remain after make docker/stop"
mk docker/clean >/dev/null 2>&1 || fail "make docker/clean"
[[ -z $(docker volume ls -q --filter "label=com.docker.compose.project=$SCALED") ]] \
    || fail "volumes of $SCALED remain after make docker/clean"
ok "no container or volume of $SCALED left"
phase_end "($REPLICAS replicas; a new model on each $switched s after its upload; 36 predictions, one history)"

# --- 7. the test suite inside the image --------------------------------------------------------
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
