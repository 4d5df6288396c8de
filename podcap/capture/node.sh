# podcap node-side capture script (POSIX sh). Sent over the transport as `sh -c SCRIPT podcap-node ARGS`;
# needs only sh, nsenter, timeout, tcpdump, coreutils (or busybox) and /proc on the node.
#
# Usage: podcap-node (--container-id ID | --pid PID [--node-view] | --here) [--iface IF] [--snaplen N]
#                    [--count N] [--bound SECONDS] [--lease SECONDS] [--mode capture|resolve]
#                    [--pid-lookup WAY,...] [--node-netns PID] [-- FILTER]
# --pid-lookup: how a container ID becomes a PID, in order (cgroup, crictl, docker, podman, ctr);
#               default cgroup,crictl,docker.
# --node-netns: a process in the node's network namespace (a hostPID helper Pod: 1); default this
#               script's own (run on the node itself: local, ssh).
# --node-view: PID is in the node's own network namespace, and that is what to capture.
# --here: capture in this script's own network namespace, without nsenter (an ephemeral container
#         in the target Pod: the Pod's namespace already, and no CAP_SYS_ADMIN to enter one).
#
# stdout carries the pcap stream and nothing else. stderr carries lines starting with
# "podcap-node: " that the client parses:
#   podcap-node: target pid=PID netns=net:[INODE]
#   podcap-node: log: <a line tcpdump wrote on stderr>
#   podcap-node: ready                              (tcpdump listens)
#   podcap-node: stats captured=N received=N dropped=N written=BYTES status=RC
#   podcap-node: error: <one-line message>          (then exit status 3)
# The capture stops (tcpdump gets SIGINT, so it flushes its last packet and prints its
# statistics) when stdin reaches EOF, when a line "stop" arrives on stdin, or when the time bound
# expires: a lost connection closes stdin, so nothing outlives it. With --lease N the client
# also beats (any other line on stdin) and N seconds without a beat stop it too: an exec whose
# client died (kill -9) may keep its stdin open on the node, and nothing else would notice.

say() { printf 'podcap-node: %s\n' "$*" >&2; }
fail() { say "error: $*"; exit 3; }

container_id='' pid='' iface=eth0 snaplen='' count='' bound=14400 mode=capture filter='' node_view=''
lease='' here='' lookups=cgroup,crictl,docker node_netns=$$
while [ $# -gt 0 ]; do
  case $1 in
    --container-id) container_id=$2; shift 2 ;;
    --pid) pid=$2; shift 2 ;;
    --iface) iface=$2; shift 2 ;;
    --snaplen) snaplen=$2; shift 2 ;;
    --count) count=$2; shift 2 ;;
    --bound) bound=$2; shift 2 ;;
    --lease) lease=$2; shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    --pid-lookup) lookups=$2; shift 2 ;;
    --node-netns) node_netns=$2; shift 2 ;;
    --node-view) node_view=1; shift ;;
    --here) here=1; shift ;;
    --) filter=${2-}; break ;;
    *) fail "unknown argument $1" ;;
  esac
done

# Entering another process's network namespace and reading its /proc entries take root.
uid=$(id -u 2>/dev/null) && [ "$uid" != 0 ] &&
  fail "runs as user $uid on the node, not root: entering a Pod's network namespace needs root (over ssh: --ssh-user root, or --ssh-sudo)"

is_number() { case $1 in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac; }
[ -z "$lease" ] || { is_number "$lease" && [ "$lease" -gt 0 ]; } || fail "invalid lease '$lease'"

# Strip the runtime prefix Kubernetes puts in containerStatuses (containerd://, cri-o://, docker://)
# and allow only the characters container IDs are made of: the ID goes into grep and CLIs.
normalize_id() {
  id=${1#*://}
  case $id in '' | *[!A-Za-z0-9_.+-]* | -*) fail "invalid container id '$1'" ;; esac
  [ ${#id} -ge 12 ] || fail "container id '$1' is too short (need at least 12 characters)"
  printf '%s' "$id"
}

# Every process of a container lives in a cgroup whose path names the container ID, on cgroup v1
# and v2, with the cgroupfs driver (.../<id>) and the systemd one (cri-containerd-<id>.scope,
# crio-<id>.scope, docker-<id>.scope). The lowest matching PID is normally the container's init.
pid_from_cgroups() {
  # One grep over every cgroup file (a fork per process would take seconds on a busy node).
  grep -lsF -- "$1" /proc/[0-9]*/cgroup 2>/dev/null |
    sed -n 's,^/proc/\([0-9][0-9]*\)/cgroup$,\1,p' | sort -n | head -n 1
}

# Fallbacks when /proc does not show the ID (e.g. a runtime that names cgroups differently).
pid_from_crictl() {
  command -v crictl >/dev/null 2>&1 || return 0
  p=$(crictl inspect -o go-template --template '{{.info.pid}}' "$1" 2>/dev/null)
  is_number "$p" && [ "$p" -gt 0 ] && { printf '%s' "$p"; return 0; }
  # Older crictl/CRI-O put the PID at the top level (.pid); without jq, read the first "pid": key.
  p=$(crictl inspect "$1" 2>/dev/null | sed -n 's/^[[:space:]]*"pid":[[:space:]]*\([0-9][0-9]*\).*/\1/p' | head -n 1)
  is_number "$p" && [ "$p" -gt 0 ] && printf '%s' "$p"
  return 0
}

pid_from_docker() {
  command -v docker >/dev/null 2>&1 || return 0
  p=$(docker inspect -f '{{.State.Pid}}' "$1" 2>/dev/null)
  is_number "$p" && [ "$p" -gt 0 ] && printf '%s' "$p"
  return 0
}

pid_from_podman() {
  command -v podman >/dev/null 2>&1 || return 0
  p=$(podman inspect -f '{{.State.Pid}}' "$1" 2>/dev/null)
  is_number "$p" && [ "$p" -gt 0 ] && printf '%s' "$p"
  return 0
}

# containerd's own CLI: the task of that ID in whichever containerd namespace holds it (k8s.io for
# the kubelet's, default for ctr's own); `ctr task ls` prints TASK PID STATUS.
pid_from_ctr() {
  command -v ctr >/dev/null 2>&1 || return 0
  # A containerd that is not there is said at once (ctr's own wait is 10 s).
  for ns in $(ctr --connect-timeout 2s namespaces ls -q 2>/dev/null); do
    p=$(ctr --connect-timeout 2s -n "$ns" task ls 2>/dev/null | awk -v id="$1" '$1 == id || index($1, id) == 1 { print $2; exit }')
    is_number "$p" && [ "$p" -gt 0 ] && { printf '%s' "$p"; return 0; }
  done
  return 0
}

resolve_pid() {
  if [ -n "$here" ]; then
    pid=$$ enter=''
    return
  fi
  if [ -n "$pid" ]; then
    is_number "$pid" && [ "$pid" -gt 0 ] || fail "invalid pid '$pid'"
    [ -d "/proc/$pid" ] || fail "no process with pid $pid on this node"
    enter="nsenter -n -t $pid --"
    return
  fi
  [ -n "$container_id" ] || fail "give --container-id or --pid"
  id=$(normalize_id "$container_id") || exit 3
  tried=''
  for way in $(echo "$lookups" | tr ',' ' '); do
    case $way in
      cgroup) pid=$(pid_from_cgroups "$id"); tried="$tried, /proc/*/cgroup" ;;
      crictl | docker | podman | ctr)
        if command -v "$way" >/dev/null 2>&1; then
          pid=$(pid_from_"$way" "$id"); tried="$tried, $way"
        else
          tried="$tried, $way (not installed)"
        fi ;;
      *) fail "unknown --pid-lookup '$way' (cgroup, crictl, docker, podman, ctr)" ;;
    esac
    [ -z "$pid" ] || break
  done
  [ -n "$pid" ] || fail "no process on this node belongs to container $id (looked in ${tried#, })"
  enter="nsenter -n -t $pid --"
}

# The node's netns is this script's own when it runs on the node (local, ssh), and the one of
# --node-netns PID otherwise (the helper Pod has its own netns, and hostPID: PID 1 is the node's
# init there). Nothing here takes PID 1 for the node by itself: in a sandbox PID 1 may be
# unreadable, or not the host.
check_netns() {
  target_ns=$(readlink "/proc/$pid/ns/net" 2>/dev/null) || fail "cannot read /proc/$pid/ns/net (not root, or the process ended)"
  is_number "$node_netns" || fail "invalid --node-netns '$node_netns'"
  node_ns=$(readlink "/proc/$node_netns/ns/net" 2>/dev/null) || {
    node_ns=''
    say "log: cannot read /proc/$node_netns/ns/net: not checked whether pid $pid shares the node's network"
  }
  if [ -n "$node_ns" ] && [ "$target_ns" = "$node_ns" ] && [ -z "$node_view" ] && [ -z "$here" ]; then
    fail "pid $pid shares the node's network namespace ($node_ns): this container shares the node's network, capture on the node instead"
  fi
  say "target pid=$pid netns=$target_ns"
}

need_tools() {
  for tool in ${enter:+nsenter} timeout tcpdump mkfifo mktemp tee wc; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool not found on the node"
  done
}

# Replaces this (sub)shell with "$@" followed by tcpdump's options and the filter, which goes last,
# after "--", as one argv item: it never meets a shell.
exec_with_tcpdump_args() {
  set -- "$@" -i "$iface"
  [ -z "$snaplen" ] || set -- "$@" -s "$snaplen"
  [ -z "$count" ] || set -- "$@" -c "$count"
  [ -z "$filter" ] || set -- "$@" -- "$filter"
  exec "$@"
}

# tcpdump -d compiles the filter for the interface's link type without capturing anything.
check_filter() {
  # shellcheck disable=SC2086 # $enter is "nsenter -n -t PID --" (a number), or empty
  if ! out=$(exec_with_tcpdump_args $enter tcpdump -d 2>&1 >/dev/null); then
    msg=$(printf '%s' "$out" | tr '\n' ' ' | sed 's/[[:space:]]*$//')
    fail "tcpdump refused the capture on $iface: $msg"
  fi
}

relay_tcpdump_stderr() {
  while IFS= read -r line; do
    printf '%s\n' "$line" >>"$tmp/errlog"
    case $line in *" packets captured, "*) continue ;; esac  # our own SIGUSR1 queries
    say "log: $line"
    case $line in *"listening on"*) : >"$tmp/ready"; say ready ;; esac
  done
}

# The tcpdump process itself: the child of timeout(1) (nsenter -n execs it, without a fork).
tcpdump_process() {
  for child in $(cat "/proc/$tcpdump_pid/task/$tcpdump_pid/children" 2>/dev/null); do
    [ "$(cat "/proc/$child/comm" 2>/dev/null)" = tcpdump ] && printf '%s' "$child"
  done
}

# SIGUSR1 makes tcpdump print "N packets captured, M packets received by filter, D packets
# dropped by kernel"; query_counts PID prints "N M D" from the line that answered (nothing if
# tcpdump is gone or did not answer within 5 s).
query_counts() {
  answers=$(grep -c ' packets captured, ' "$tmp/errlog")
  kill -USR1 "$1" 2>/dev/null || return 0
  waited=0
  while [ "$(grep -c ' packets captured, ' "$tmp/errlog")" -le "$answers" ]; do
    waited=$((waited + 1))
    { [ "$waited" -le 50 ] && kill -0 "$1" 2>/dev/null; } || return 0
    sleep 0.1 2>/dev/null || sleep 1
  done
  grep ' packets captured, ' "$tmp/errlog" | tail -n 1 |
    sed -n 's/.* \([0-9][0-9]*\) packets* captured, \([0-9][0-9]*\) packets* received by filter, \([0-9][0-9]*\) packets* dropped.*/\1 \2 \3/p'
}

# Returns once tcpdump (PID $1) has written every packet the kernel had queued for it when the
# stop came. A SIGINT ends tcpdump without draining its ring, and packets wait there up to
# tcpdump's 1 s buffer timeout (we do not use --immediate-mode, which makes libpcap drop packets
# under bursts) plus however long a loaded node takes to schedule tcpdump: a fixed wait is a
# guess. The kernel counts each packet as it queues it (received by filter, dropped when the
# ring was full); tcpdump counts what it wrote: once written >= queued-at-stop, all is out.
# libpcap also discards some queued packets itself (lo's outgoing copies), so written may never
# catch up: then, after the ring's blocks have timed out (1.2 s), written standing still
# between two of tcpdump's answers will do. Status 1 when tcpdump cannot be queried; ~10 s at
# most (a tcpdump that cannot keep up must still stop).
drain_ring() {
  set -- "$1" $(query_counts "$1")
  [ $# -eq 4 ] || return 1
  queued=$(($3 - $4)) polls=0 last=-1
  while [ "$2" -lt "$queued" ] && [ "$polls" -lt 50 ]; do
    [ "$polls" -ge 6 ] && [ "$2" -eq "$last" ] && return 0
    last=$2
    sleep 0.2 2>/dev/null || sleep 1
    polls=$((polls + 1))
    set -- "$1" $(query_counts "$1")
    [ $# -eq 4 ] || return 1
  done
}

# Stops tcpdump the way Ctrl-C does, so it writes its last packets and prints its statistics.
# Wait for tcpdump to listen (a SIGINT before it has set its handler would kill it before it
# wrote the pcap header), let it drain the ring, then repeat the SIGINT in case one is lost in
# the start-up race. Where tcpdump cannot be queried, wait out its buffer timeout instead.
stop_tcpdump() {
  while [ ! -e "$tmp/ready" ] && kill -0 "$tcpdump_pid" 2>/dev/null; do sleep 1; done
  tcpdump=$(tcpdump_process)
  if [ -z "$tcpdump" ] || ! drain_ring "$tcpdump"; then
    sleep 1.2 2>/dev/null || sleep 2
  fi
  while kill -INT "$tcpdump_pid" 2>/dev/null; do sleep 1; done
}

# A "stop" line or EOF on stdin (the client closed it, or the connection is gone) stops tcpdump.
watch_stdin() {
  while IFS= read -r line; do
    [ "$line" = stop ] && break
    [ -z "$lease" ] || date +%s >"$tmp/beat"
  done
  stop_tcpdump
}

# --lease N: no beat for N seconds means the client is gone; stop as if it had said so.
watch_lease() {
  trap '' PIPE  # its "log:" line to a client long gone must not end it before the stop
  date +%s >"$tmp/beat"
  while sleep 2; do
    last=$(cat "$tmp/beat" 2>/dev/null) now=$(date +%s)
    [ $((now - ${last:-now})) -le "$lease" ] && continue
    say "log: no word from podcap for $lease s: stopping"
    : >"$tmp/lease-expired"
    stop_tcpdump
    return
  done
}

# The time bound (--duration, or the safety bound) stops it the same way.
watch_clock() {
  sleep "$bound" &
  sleeper=$!
  trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM  # leave no sleep behind on the node
  wait "$sleeper"
  : >"$tmp/bound-expired"
  stop_tcpdump
}

stat_of() {
  v=$(sed -n "s/^\([0-9][0-9]*\) packets* $1.*/\1/p" "$tmp/errlog" 2>/dev/null | tail -n 1)
  printf '%s' "${v:--1}"
}

report_stats() {
  written=$(tr -d ' \n' <"$tmp/written" 2>/dev/null)
  say "stats captured=$(stat_of captured) received=$(stat_of 'received by filter')" \
    "dropped=$(stat_of 'dropped by kernel') written=${written:--1} status=$1"
}

capture() {
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/podcap.XXXXXX") || fail "cannot make a temporary directory"
  trap 'rm -rf "$tmp"' EXIT
  mkfifo "$tmp/pcap" "$tmp/copy" "$tmp/err" || fail "cannot make fifos in $tmp"
  : >"$tmp/errlog"
  exec 3<&0  # asynchronous jobs get /dev/null as stdin: keep the real one on fd 3

  # The pcap flows tcpdump -> fifo -> tee -> our stdout, and tee's copy goes to wc, which counts
  # the bytes we sent so the client can check it received them all.
  wc -c <"$tmp/copy" >"$tmp/written" &
  tee "$tmp/copy" <"$tmp/pcap" &
  relay_tcpdump_stderr <"$tmp/err" &
  # timeout forwards our SIGINT to tcpdump, and ends a tcpdump that outlives the bound anyway.
  exec_with_tcpdump_args timeout -s INT -k 5 "$((bound + 10))" \
    $enter tcpdump -U -w - >"$tmp/pcap" 2>"$tmp/err" &
  tcpdump_pid=$!
  watch_stdin <&3 &
  stdin_watcher=$!
  watch_clock &
  clock_watcher=$!
  lease_watcher=''
  if [ -n "$lease" ]; then
    watch_lease &
    lease_watcher=$!
  fi
  trap 'kill -INT "$tcpdump_pid" 2>/dev/null' INT TERM HUP
  # Once the connection is gone our stderr is a broken pipe: a status line must not kill this
  # shell before its EXIT trap cleans up (set only now, so the children keep the default).
  trap '' PIPE

  wait "$tcpdump_pid"
  status=$?
  while kill -0 "$tcpdump_pid" 2>/dev/null; do  # a trapped signal interrupted the wait
    wait "$tcpdump_pid"
    status=$?
  done
  kill "$stdin_watcher" "$clock_watcher" $lease_watcher 2>/dev/null
  [ ! -e "$tmp/bound-expired" ] || status=124  # as timeout(1) says it: the bound ended it
  # If tcpdump died before opening its end of the fifos, their readers still wait in open():
  # an open for read and write never blocks and lets them see EOF.
  for fifo in pcap err; do
    exec 4<>"$tmp/$fifo"
    exec 4>&-
  done
  wait
  report_stats "$status"
}

case $mode in
  resolve | capture) ;;
  *) fail "unknown mode $mode" ;;
esac
resolve_pid
check_netns
if [ "$mode" = resolve ]; then
  printf '%s\n' "$pid"
  exit 0
fi
need_tools
check_filter
capture
