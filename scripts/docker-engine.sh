#!/bin/sh
# Make sure a Docker engine answers on this machine; start dockerd in the background if not.
# Idempotent and safe to call concurrently (flock). Exits 0 once `docker info` works,
# non-zero with a clear message if the engine cannot be started before the deadline.
#
# Environment:
#   DOCKERD_ARGS      extra dockerd flags for the first attempt (default: none)
#   DOCKERD_FALLBACK  flags for a second attempt if the first dockerd dies
#                     (default: --storage-driver=vfs --iptables=false --bridge=none)
#   DOCKERD_LOG       log file (default: /var/log/edgebac-dockerd.log, /tmp if not writable)
#   DOCKERD_TIMEOUT   seconds to wait per attempt (default: 60)
set -eu

DOCKERD_ARGS="${DOCKERD_ARGS:-}"
DOCKERD_FALLBACK="${DOCKERD_FALLBACK:---storage-driver=vfs --iptables=false --bridge=none}"
DOCKERD_TIMEOUT="${DOCKERD_TIMEOUT:-60}"
if [ -z "${DOCKERD_LOG:-}" ]; then
    DOCKERD_LOG=/var/log/edgebac-dockerd.log
    touch "$DOCKERD_LOG" 2>/dev/null || DOCKERD_LOG=/tmp/edgebac-dockerd.log
fi
LOCK=/tmp/edgebac-docker-engine.lock

fail() {
    echo "docker-engine: error: $*" >&2
    exit 1
}

ready() {
    docker info >/dev/null 2>&1
}

if ready; then
    exit 0
fi
command -v docker >/dev/null 2>&1 || fail "no docker client on PATH (apt-get install docker.io)"
command -v dockerd >/dev/null 2>&1 || fail "no dockerd on PATH (apt-get install docker.io)"
[ "$(id -u)" = 0 ] || fail "docker info fails and starting dockerd needs root"

# One starter at a time; the others wait on the lock, then see a ready engine.
exec 9>"$LOCK"
flock -w "$((DOCKERD_TIMEOUT * 2 + 10))" 9 || fail "timed out waiting for $LOCK"
if ready; then
    exit 0
fi

# A dockerd that is already running (but not answering yet) gets the deadline to come up.
if pid=$(pidof dockerd 2>/dev/null); then
    echo "docker-engine: dockerd already running (pid $pid), waiting for it" >&2
    end=$(($(date +%s) + DOCKERD_TIMEOUT))
    while [ "$(date +%s)" -lt "$end" ]; do
        ready && exit 0
        sleep 0.2
    done
    fail "dockerd (pid $pid) is running but 'docker info' still fails after ${DOCKERD_TIMEOUT}s"
fi

# dockerd needs mounted cgroups (v2 unified, or v1 hierarchies); machines without an init
# that mounts them (some containers/VMs) get them from Debian's cgroupfs-mount.
if [ ! -e /sys/fs/cgroup/cgroup.controllers ] && [ ! -d /sys/fs/cgroup/memory ]; then
    if command -v cgroupfs-mount >/dev/null 2>&1; then
        echo "docker-engine: no cgroups mounted, running cgroupfs-mount" >&2
        cgroupfs-mount >>"$DOCKERD_LOG" 2>&1 || echo "docker-engine: cgroupfs-mount failed" >&2
    else
        echo "docker-engine: warning: no cgroups mounted (apt-get install cgroupfs-mount)" >&2
    fi
fi

# start FLAGS: launch dockerd detached, wait for it. 0 = ready, 1 = it died, 2 = deadline.
start() {
    echo "=== $(date -u +%FT%TZ) starting: dockerd $*" >>"$DOCKERD_LOG"
    # setsid + nohup: dockerd outlives this script and the caller's session; 9>&- keeps
    # the lock fd out of dockerd (else it would hold the lock forever).
    setsid nohup dockerd "$@" >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
    pid=$!
    end=$(($(date +%s) + DOCKERD_TIMEOUT))
    while [ "$(date +%s)" -lt "$end" ]; do
        if ready; then
            echo "docker-engine: dockerd started (pid $pid, flags: ${*:-none}, log $DOCKERD_LOG)" >&2
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.2
    done
    return 2
}

# shellcheck disable=SC2086
if start $DOCKERD_ARGS; then
    exit 0
elif [ $? = 2 ]; then
    fail "dockerd did not answer within ${DOCKERD_TIMEOUT}s; see $DOCKERD_LOG"
fi
echo "docker-engine: dockerd ${DOCKERD_ARGS:-(no flags)} exited; retrying with $DOCKERD_FALLBACK" >&2
# The first dockerd may leave its containerd behind; give it a moment to go.
sleep 1
# shellcheck disable=SC2086
if start $DOCKERD_FALLBACK; then
    exit 0
fi
echo "--- last lines of $DOCKERD_LOG:" >&2
tail -n 15 "$DOCKERD_LOG" >&2
fail "cannot start dockerd (tried '${DOCKERD_ARGS:-no flags}' and '$DOCKERD_FALLBACK'); see $DOCKERD_LOG"
