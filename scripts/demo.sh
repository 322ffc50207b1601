#!/usr/bin/env bash
# macvland demo: validate and plan, then the daemon (`macvland run`) keeping the kernel
# matching the spec while things change under it, in throwaway namespaces.
#
# Safe to run on any machine (as root), and again: it never touches the host's own interfaces.
#   mvdemo-host-PID   plays the host: macvland runs in it, and it holds the parent device
#                     eth1 (one end of a veth pair made for the demo)
#   mvdemo-web-PID    target namespaces that receive macvlan interfaces
#   mvdemo-db-PID
#   mvdemo-late-PID   a namespace the demo creates only later, while the daemon runs
# Everything it creates (namespaces, interfaces, the daemon, temporary files) is stopped or
# removed on exit, even when a step fails or the demo is interrupted.
#
# Run it with `make demo` (which sets up .venv first) or ./scripts/demo.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MACVLAND="$ROOT/.venv/bin/macvland"

HOST="mvdemo-host-$$"
WEB="mvdemo-web-$$"
DB="mvdemo-db-$$"
LATE="mvdemo-late-$$"
WORK=""
DAEMON=""    # the daemon's pid, while it runs
CREATED=()   # namespaces this run made, and only those, are deleted on exit

if [[ -t 1 ]]; then BOLD=$'\e[1m' DIM=$'\e[2m' RESET=$'\e[0m'; else BOLD="" DIM="" RESET=""; fi

cleanup() {
    local rc=$? ns
    set +e
    if [[ -n "$DAEMON" ]]; then
        kill "$DAEMON" 2>/dev/null
        wait "$DAEMON" 2>/dev/null
        DAEMON=""
    fi
    for ns in "${CREATED[@]}"; do
        # Deleting a namespace deletes every interface in it: the veth pair and the macvlans.
        ip netns delete "$ns" 2>/dev/null
    done
    CREATED=()
    [[ -n "$WORK" ]] && rm -rf -- "$WORK"
    WORK=""
    if [[ $rc -ne 0 ]]; then
        echo "${BOLD}demo failed (exit $rc); its daemon, namespaces and files were removed${RESET}" >&2
    fi
    return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step_number=0
step() {
    step_number=$((step_number + 1))
    printf '\n%s== %d. %s%s\n' "$BOLD" "$step_number" "$*" "$RESET"
}

note() {
    printf '%s%s%s\n' "$DIM" "$*" "$RESET"
}

# Run macvland inside the demo's "host" namespace, as the daemon would run on a real host.
# `ip netns exec` gives it its own /sys, while /run/netns (the target namespaces) stays visible.
macvland() {
    echo "\$ macvland $*"
    ip netns exec "$HOST" "$MACVLAND" "$@" 2>&1   # one stream, so messages stay in order
}

# Run a command that is expected to exit with `want`; anything else stops the demo.
expect() {
    local want=$1 rc=0
    shift
    "$@" || rc=$?
    if [[ $rc -ne $want ]]; then
        echo "unexpected: '$*' exited with $rc, expected $want" >&2
        exit 1
    fi
    note "(exit code $rc, as expected)"
}

# Wait until a command succeeds (10 s at most): the daemon acts on events, in its own time.
wait_for() {
    local what=$1 deadline=$((SECONDS + 10))
    shift
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            echo "unexpected: $what did not happen within 10 s; the daemon's log ends:" >&2
            tail -n 20 "$WORK/daemon.log" >&2
            exit 1
        fi
        sleep 0.002
    done
}

# The daemon's audit trail since byte offset $1 of its log, without the structured fields it
# also gives the journal (`spec parsed` timings left out too).
log_offset() { stat -c %s "$WORK/daemon.log"; }
audit_since() {
    tail -c +$(($1 + 1)) "$WORK/daemon.log" | grep -v '^debug: spec parsed' |
        sed -E 's/ \[(MESSAGE_ID|MACVLAND_)[^]]*\]$//; s/^/  | /'
}
logged() { audit_since "$1" | grep -q -e "$2"; }

ifindex() { ip -n "$1" -o link show "$2" | cut -d: -f1; }
shows() { ip -n "$1" -d link show "$2" | grep -q -e "$3"; }

# Replace the spec as config management should: write a new file, then rename it over the
# old one, so that the daemon never reads a half-written spec.
write_spec() {
    cat >"$WORK/etc/.macvland.yaml.new"
    mv "$WORK/etc/.macvland.yaml.new" "$MACVLAND_CONFIG"
}

# --- preconditions -------------------------------------------------------------------------

if [[ $(id -u) -ne 0 ]]; then
    echo "the demo creates network namespaces and needs root; run it as root (make demo)" >&2
    exit 1
fi
if [[ ! -x "$MACVLAND" ]]; then
    echo "$MACVLAND not found; run 'make demo', which sets up .venv" >&2
    exit 1
fi
command -v ip >/dev/null || { echo "the demo needs 'ip' from iproute2" >&2; exit 1; }

# --- set-up --------------------------------------------------------------------------------

step "Set up a sandbox"
# macvland refuses a spec that anyone but root can change (like sshd's StrictModes), so the
# demo's files are made with a umask that keeps them so; mktemp -d's directory is 0700.
umask 022
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mvdemo.XXXXXX")"
export MACVLAND_STATE_DIR="$WORK/state"   # where macvland remembers the namespaces it used
mkdir "$WORK/etc"   # the spec's own directory: the daemon watches it, so its log goes elsewhere
export MACVLAND_CONFIG="$WORK/etc/macvland.yaml"
for ns in "$HOST" "$WEB" "$DB"; do
    ip netns add "$ns"
    CREATED+=("$ns")
done
ip -n "$HOST" link add eth1 type veth peer name eth1-peer
ip -n "$HOST" link set eth1 up
ip -n "$HOST" link set eth1-peer up
# A macvlan made by hand, not by macvland: it must be left alone throughout.
ip -n "$HOST" link add mv-manual link eth1 type macvlan mode bridge
echo "namespaces: $HOST (macvland runs here), $WEB, $DB; $LATE comes later"
echo "parent device: eth1 in $HOST (a veth pair; the host's interfaces are not used)"
echo "hand-made macvlan: mv-manual on eth1 (not in the spec, so macvland must not touch it)"
echo "spec: \$MACVLAND_CONFIG=$MACVLAND_CONFIG"

spec() {   # the demo's spec, with mv-db's MTU as $1
    cat <<EOF
version: 1
interfaces:
  - name: mv-web            # goes into the namespace $WEB
    parent: eth1
    mode: bridge
    netns: $WEB
    mac: 02:00:00:00:0a:01
  - name: mv-db             # goes into $DB, with a smaller MTU
    parent: eth1
    netns: $DB
    mtu: $1
  - name: mv-cam            # stays next to its parent; accepts frames from one sender only
    parent: eth1
    mode: source
    source_macs: [02:00:00:00:0c:01]
  - name: mv-late           # for a namespace that does not exist yet
    parent: eth1
    netns: $LATE
EOF
}
spec 1450 >"$MACVLAND_CONFIG"

# --- the tour ------------------------------------------------------------------------------

step "The spec: four macvlans on eth1, three of them in other namespaces"
cat "$MACVLAND_CONFIG"

step "validate checks the spec without touching the kernel"
expect 0 macvland validate

step "plan shows what one pass would do (exit code 2: there are changes)"
expect 2 macvland plan

step "run: the daemon keeps the kernel matching the spec from now on"
echo "\$ macvland run -v --log stderr 2>daemon.log &    (-v: a line per pass, with its time)"
ip netns exec "$HOST" "$MACVLAND" run -v --log stderr >"$WORK/daemon.log" 2>&1 &
DAEMON=$!
wait_for "the first pass" logged 0 '^  | debug: pass (startup)'
audit_since 0
note "mv-late waits for its namespace; 'apply' would do this one pass and exit."

step "Delete mv-web by hand: the daemon puts it back"
offset=$(log_offset)
echo "\$ ip -n $WEB link del mv-web"
ip -n "$WEB" link del mv-web
deleted=$EPOCHREALTIME
wait_for "mv-web to come back" ip -n "$WEB" link show mv-web
back=$EPOCHREALTIME
wait_for "the pass line" logged "$offset" 'pass (.*drift'
audit_since "$offset"
note "mv-web was back $(( (${back/./} - ${deleted/./}) / 1000 )) ms after 'ip link del' returned" \
     "(as often as ip link show could look)."

step "Change mv-web's mode by hand: the daemon changes it back, in place"
before=$(ifindex "$WEB" mv-web)
offset=$(log_offset)
echo "\$ ip -n $WEB link set mv-web type macvlan mode vepa"
ip -n "$WEB" link set mv-web type macvlan mode vepa
wait_for "the pass line" logged "$offset" 'pass (.*drift'
wait_for "bridge mode again" shows "$WEB" mv-web 'mode bridge'
audit_since "$offset"
note "mv-web keeps ifindex $(ifindex "$WEB" mv-web) (it was $before): changed, not re-created."

step "Edit the spec: mv-db's MTU 1450 -> 1400, applied in place"
before=$(ifindex "$DB" mv-db)
offset=$(log_offset)
echo "\$ (write the new spec beside the old one, rename it over)"
spec 1400 | write_spec
wait_for "the new MTU" shows "$DB" mv-db 'mtu 1400'
wait_for "the pass line" logged "$offset" 'pass (.*spec change'
audit_since "$offset"
note "mv-db keeps ifindex $(ifindex "$DB" mv-db) (it was $before)."

step "Create the namespace $LATE: mv-late appears in it"
offset=$(log_offset)
echo "\$ ip netns add $LATE"
ip netns add "$LATE"
CREATED+=("$LATE")
wait_for "mv-late in $LATE" ip -n "$LATE" link show mv-late
wait_for "the pass line" logged "$offset" 'pass (.*namespace appeared'
audit_since "$offset"

step "A bad edit is rejected, with its file:line:col; the last good spec stays in force"
offset=$(log_offset)
good="$(cat "$MACVLAND_CONFIG")"
sed 's/mode: bridge$/mode: brigde/' "$MACVLAND_CONFIG" | write_spec
echo "\$ (the same spec renamed into place, with 'mode: brigde' on line" \
     "$(grep -n brigde "$MACVLAND_CONFIG" | cut -d: -f1))"
wait_for "the rejection" logged "$offset" 'spec rejected'
audit_since "$offset"
offset=$(log_offset)
echo "\$ ip -n $DB link del mv-db     (and the daemon still repairs, by the last good spec)"
ip -n "$DB" link del mv-db
wait_for "mv-db to come back" shows "$DB" mv-db 'mtu 1400'
wait_for "the pass line" logged "$offset" 'pass (.*drift'
audit_since "$offset"
printf '%s\n' "$good" | write_spec   # and the fix: the good spec again

step "status: every interface in sync (exit 0), and the tree of macvlans under their parent"
expect 0 macvland status
note "mv-manual, made by hand and not in the spec, was never touched."

step "Clean up: stop the daemon (it leaves the interfaces in place), delete the namespaces"
offset=$(log_offset)
kill "$DAEMON"
wait "$DAEMON" || true
DAEMON=""
audit_since "$offset" | tail -n 1
trap - EXIT
cleanup
leftover="$(ip netns list | cut -d' ' -f1 | grep -Fx -e "$HOST" -e "$WEB" -e "$DB" -e "$LATE" || true)"
if [[ -n "$leftover" ]]; then
    echo "namespaces left behind:" >&2
    echo "$leftover" >&2
    exit 1
fi
echo "Removed the namespaces $HOST, $WEB, $DB and $LATE, and with them eth1,"
echo "its peer and every macvlan; removed the temporary directory. Nothing else was changed."
