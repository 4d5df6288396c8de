# podcap's drop watcher, run on the node beside the captures (in the node's mount and network
# namespaces): the kernel's skb:kfree_skb tracepoint, with its drop reason and the function that
# dropped the packet, through bpftrace, for the packets of the capture's addresses only (the
# program, built by podcap, filters in the kernel).
#
#   sh -c SCRIPT podcap-drops BOUND PROGRAM
#
# stdout: "R <the tracepoint's print fmt>" (its reason names, as this kernel numbers them),
# "N <the node's netns>", then bpftrace's lines: "Attaching ..." once it listens, one "D|..."
# line per drop. A line "unavailable: WHY" and status 0 where the node cannot watch (no tracefs,
# a kernel without drop reasons, no bpftrace): the capture goes on without it. It stops on EOF or
# a line "stop" on stdin, and after BOUND seconds in any case; it leaves no process and no
# mount behind (a shell killed outright leaves at most its stdin reader, which ends on EOF).
set -u
bound=$1 program=$2
tracing=/sys/kernel/tracing
format=$tracing/events/skb/kfree_skb/format
mounted=

unavailable() {
  printf 'unavailable: %s\n' "$*"
  exit 0
}

cleanup() {
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
command -v bpftrace >/dev/null 2>&1 || unavailable "no bpftrace on the node (apt install bpftrace, or a helper image with it)"

exec 3<&0  # asynchronous jobs get /dev/null as stdin: keep the real one on fd 3
# bpftrace cannot raise RLIMIT_MEMLOCK in some containers; it says so and loads anyway.
# timeout(1) is the time bound: no sleeping process of ours can outlive a killed shell.
timeout -s INT -k 5 "$bound" bpftrace -e "$program" 2>/dev/null &
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
