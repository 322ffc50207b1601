#!/usr/bin/env bash
# macvland demo: a tour of validate, plan, apply and status, in throwaway namespaces.
#
# Safe to run on any machine (as root): it never touches the host's own interfaces.
#   mvdemo-host-PID   plays the host: macvland runs in it, and it holds the parent device
#                     eth1 (one end of a veth pair made for the demo)
#   mvdemo-web-PID    target namespaces that receive macvlan interfaces
#   mvdemo-db-PID
# Everything it creates (namespaces, interfaces, temporary files) is removed on exit, even
# when a step fails or the demo is interrupted.
#
# Run it with `make demo` (which sets up .venv first) or ./scripts/demo.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MACVLAND="$ROOT/.venv/bin/macvland"

HOST="mvdemo-host-$$"
WEB="mvdemo-web-$$"
DB="mvdemo-db-$$"
WORK=""
CREATED=()   # namespaces this run made, and only those, are deleted on exit

if [[ -t 1 ]]; then BOLD=$'\e[1m' DIM=$'\e[2m' RESET=$'\e[0m'; else BOLD="" DIM="" RESET=""; fi

cleanup() {
    local rc=$? ns
    set +e
    for ns in "${CREATED[@]}"; do
        # Deleting a namespace deletes every interface in it: the veth pair and the macvlans.
        ip netns delete "$ns" 2>/dev/null
    done
    CREATED=()
    [[ -n "$WORK" ]] && rm -rf -- "$WORK"
    WORK=""
    if [[ $rc -ne 0 ]]; then
        echo "${BOLD}demo failed (exit $rc); its namespaces and files were removed${RESET}" >&2
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

# Show the interfaces of a namespace with the kernel's own tool, not macvland's.
show_links() {
    local ns=$1
    shift
    echo "\$ ip -n $ns -d link show $*"
    ip -n "$ns" -d link show "$@"
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
export MACVLAND_CONFIG="$WORK/macvland.yaml"
for ns in "$HOST" "$WEB" "$DB"; do
    ip netns add "$ns"
    CREATED+=("$ns")
done
ip -n "$HOST" link add eth1 type veth peer name eth1-peer
ip -n "$HOST" link set eth1 up
ip -n "$HOST" link set eth1-peer up
# A macvlan made by hand, not by macvland: it must be left alone throughout.
ip -n "$HOST" link add mv-manual link eth1 type macvlan mode bridge
echo "namespaces: $HOST (macvland runs here), $WEB, $DB"
echo "parent device: eth1 in $HOST (a veth pair; the host's interfaces are not used)"
echo "hand-made macvlan: mv-manual on eth1 (not in the spec, so macvland must not touch it)"
echo "spec: \$MACVLAND_CONFIG=$MACVLAND_CONFIG"
echo "state: \$MACVLAND_STATE_DIR=$MACVLAND_STATE_DIR"

cat >"$MACVLAND_CONFIG" <<EOF
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
    mtu: 1450
  - name: mv-cam            # stays next to its parent; accepts frames from one sender only
    parent: eth1
    mode: source
    source_macs: [02:00:00:00:0c:01]
  - name: mv-spare          # created administratively down
    parent: eth1
    mode: private
    state: down
EOF

# --- the tour ------------------------------------------------------------------------------

step "The spec: four macvlans on eth1, two of them in other namespaces"
cat "$MACVLAND_CONFIG"

step "validate: check the spec without touching the kernel"
expect 0 macvland validate

step "plan: what apply would do (a dry run; exit code 2 means 'there are changes')"
expect 2 macvland plan

step "apply: do it, then re-read the kernel to verify"
expect 0 macvland apply

step "status: every interface in sync (exit 0), and the tree of macvlans under their parent"
expect 0 macvland status

step "The result, seen by the kernel's own tool (ip -d link show)"
show_links "$WEB" mv-web
show_links "$DB" mv-db
show_links "$HOST" mv-cam
note "mv-cam and mv-web carry the alias 'managed-by=macvland': that is how macvland"
note "recognises its own interfaces. mv-manual has no such alias:"
show_links "$HOST" mv-manual

step "plan again: the kernel already matches the spec, so there is nothing to do (exit 0)"
expect 0 macvland plan

step "Change the spec: mv-web bridge -> vepa, mv-db MTU 1450 -> 1400, one more source MAC for mv-cam, mv-spare removed"
cat >"$MACVLAND_CONFIG" <<EOF
version: 1
interfaces:
  - name: mv-web
    parent: eth1
    mode: vepa              # was bridge: changed in place, the interface is not recreated
    netns: $WEB
    mac: 02:00:00:00:0a:01
  - name: mv-db
    parent: eth1
    netns: $DB
    mtu: 1400               # was 1450
  - name: mv-cam
    parent: eth1
    mode: source
    source_macs: [02:00:00:00:0c:01, 02:00:00:00:0c:02]   # one MAC added
  # mv-spare is gone from the spec: macvland created it, so macvland deletes it
EOF
cat "$MACVLAND_CONFIG"
web_ifindex_before="$(ip -n "$WEB" -o link show mv-web | cut -d: -f1)"

step "plan: one line per change"
expect 2 macvland plan

step "apply the changes"
expect 0 macvland apply

step "status after the change"
expect 0 macvland status

step "The kernel's view after the change"
show_links "$WEB" mv-web
show_links "$DB" mv-db
show_links "$HOST" mv-cam
web_ifindex_after="$(ip -n "$WEB" -o link show mv-web | cut -d: -f1)"
note "mv-web keeps ifindex $web_ifindex_after (it was $web_ifindex_before): the mode changed in place."
echo "\$ ip -n $HOST -br link show"
ip -n "$HOST" -br link show
note "mv-spare is gone; mv-manual, which macvland never owned, is still there."

step "An invalid spec is rejected by validate, with every error and its file:line:col"
cat >"$WORK/broken.yaml" <<'EOF'
version: 1
interfaces:
  - name: mv-web
    parent: eth1
    mode: brigde
  - name: an-interface-name-too-long
    parent: eth1
    mac: 02:00:00:00:zz:01
  - name: mv-db
    parent: eth1
    flags: [nopromisc]
    mtu: 20
EOF
cat -n "$WORK/broken.yaml"
# Run from the spec's directory so that messages name it briefly: broken.yaml:LINE:COL.
expect 1 bash -c 'cd "$1" && echo "\$ macvland validate -c broken.yaml" &&
                  "$2" validate -c broken.yaml 2>&1' _ "$WORK" "$MACVLAND"

step "Clean up"
trap - EXIT
cleanup
leftover="$(ip netns list | cut -d' ' -f1 | grep -Fx -e "$HOST" -e "$WEB" -e "$DB" || true)"
if [[ -n "$leftover" ]]; then
    echo "namespaces left behind:" >&2
    echo "$leftover" >&2
    exit 1
fi
echo "Removed the namespaces $HOST, $WEB and $DB,"
echo "and with them eth1, its peer and every macvlan; removed the temporary directory."
echo "Nothing else on this machine was changed."
