# podcap's drop watcher, run on the node beside the captures (in the node's mount and network
# namespaces): the kernel's skb:kfree_skb tracepoint, with its drop reason and the function that
# dropped the packet, through bpftrace, for the packets of the capture's addresses only (the
# program, built by podcap, filters in the kernel).
#
#   sh -c SCRIPT podcap-drops BOUND PROGRAM
#
# stdout: "R <the tracepoint's print fmt>" (its reason names, as this kernel numbers them),
# "N <the node's netns>", then bpftrace's lines: "Attaching ..." once it listens, one "D|..."
# line per drop. Without bpftrace, the tracepoint itself through a tracefs instance of our own:
# "T <wall clock> <boot clock>" (to put its times on the pcap's clock), "Attaching tracefs",
# then its trace_pipe lines: reason and function, no addresses. A line "unavailable: WHY" and
# status 0 where the node cannot watch (no tracefs, a kernel without drop reasons): the capture
# goes on without it. It stops on EOF or a line "stop" on stdin, and after BOUND seconds in any
# case; it leaves no process, trace instance or mount behind (a shell killed outright leaves at
# most its stdin reader, which ends on EOF).
set -u
bound=$1 program=$2
tracing=/sys/kernel/tracing
format=$tracing/events/skb/kfree_skb/format
mounted= instance=

unavailable() {
  printf 'unavailable: %s\n' "$*"
  exit 0
}

cleanup() {
  if [ -n "$instance" ]; then
    echo 0 >"$instance/events/skb/kfree_skb/enable" 2>/dev/null
    rmdir "$instance" 2>/dev/null
  fi
  [ -z "$mounted" ] || umount "$tracing" 2>/dev/null
}
trap cleanup EXIT

if [ ! -e "$format" ] && [ -d "$tracing" ]; then
  mount -t tracefs nodev "$tracing" 2>/dev/null && mounted=1
fi
[ -e "$format" ] || unavailable "no tracefs with skb:kfree_skb at $tracing (mount -t tracefs needs CAP_SYS_ADMIN)"
grep -q 'reason' "$format" || unavailable "kernel $(uname -r) gives no drop reasons (5.17 or newer does)"
printf 'R %s\n' "$(grep '^print fmt' "$format")"
printf 'N %s\n' "$(readlink /proc/self/ns/net)"
exec 3<&0  # asynchronous jobs get /dev/null as stdin: keep the real one on fd 3
# timeout(1) is the time bound: no sleeping process of ours can outlive a killed shell.
if command -v bpftrace >/dev/null 2>&1; then
  # bpftrace cannot raise RLIMIT_MEMLOCK in some containers; it says so and loads anyway.
  timeout -s INT -k 5 "$bound" bpftrace -e "$program" 2>/dev/null &
else
  instance=$tracing/instances/podcap-drops-$$
  mkdir "$instance" 2>/dev/null || unavailable "no bpftrace on the node, and no tracefs instance to read the tracepoint (apt install bpftrace)"
  echo boot >"$instance/trace_clock" 2>/dev/null || unavailable "no boot clock for tracefs (apt install bpftrace)"
  echo 'protocol == 2048' >"$instance/events/skb/kfree_skb/filter"  # IPv4
  echo 1 >"$instance/events/skb/kfree_skb/enable"
  printf 'T %s %s\n' "$(date +%s.%N)" "$(cut -d' ' -f1 /proc/uptime)"
  printf 'Attaching tracefs\n'
  timeout -s INT -k 5 "$bound" cat "$instance/trace_pipe" &
fi
watcher=$!
trap 'kill -INT "$watcher" 2>/dev/null' INT TERM HUP
(
  while IFS= read -r line; do
    [ "$line" = stop ] && break
  done
  kill -INT "$watcher" 2>/dev/null
) <&3 &
stdin_watcher=$!
wait "$watcher"
while kill -0 "$watcher" 2>/dev/null; do wait "$watcher"; done
kill "$stdin_watcher" 2>/dev/null
exit 0
