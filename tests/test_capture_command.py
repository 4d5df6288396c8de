"""The pure parts of a capture: input checks, the node argv, parsing the node's status lines,
and the filter refusals through the real CLI (before any connection is attempted)."""

import subprocess
import sys

import pytest

from podcap.capture import (
    CaptureSpec,
    check_filter_safety,
    node_argv,
    normalize_container_id,
    parse_node_stderr,
    parse_size,
)
from podcap.capture.command import SCRIPT_NAME, node_script
from podcap.errors import UsageError

HEX = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899"

HOSTILE_FILTERS = [
    "-z /tmp/evil.sh",
    "tcp -w /etc/passwd",
    "tcp; reboot",
    "tcp `reboot`",
    "tcp $(reboot)",
    "tcp\nport 80",
]


@pytest.mark.parametrize("bpf", HOSTILE_FILTERS)
def test_hostile_filters_are_refused(bpf):
    with pytest.raises(UsageError, match="refusing filter"):
        check_filter_safety(bpf)


@pytest.mark.parametrize(
    "bpf", ["tcp port 80 or udp", "tcp[13] & 2 != 0", "host 10.0.0.1 && port 9000", "not icmp"]
)
def test_bpf_operators_stay_allowed(bpf):
    assert check_filter_safety(bpf) == bpf


@pytest.mark.parametrize("bpf", ["-z /tmp/evil.sh", "tcp; reboot", "tcp $(id)"])
def test_cli_refuses_hostile_filter_before_connecting(bpf):
    # The node name cannot resolve: had podcap tried to connect, the error would be ssh's.
    result = subprocess.run(
        [sys.executable, "-m", "podcap", "capture", "--via", "ssh", "--node", "no-such-host.invalid",
         "--container-id", HEX, "-f", bpf, "-o", "/tmp/never-written.pcap"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert "refusing filter" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "given", [f"containerd://{HEX}", f"cri-o://{HEX}", f"docker://{HEX}", HEX, HEX[:12]]
)
def test_container_ids_of_every_runtime_are_accepted(given):
    assert normalize_container_id(given) in (HEX, HEX[:12])


@pytest.mark.parametrize(
    "given", ["", "containerd://", "abc", f"{HEX};id", f"-{HEX}", f"{HEX} x", "../../etc/passwd1"]
)
def test_bad_container_ids_are_refused(given):
    with pytest.raises(UsageError):
        normalize_container_id(given)


def test_spec_needs_exactly_one_target():
    with pytest.raises(UsageError):
        CaptureSpec()
    with pytest.raises(UsageError):
        CaptureSpec(container_id=HEX, pid=1)


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"count": 0}, "count must be more than zero"),
        ({"interface": "eth0 -z"}, "invalid interface name"),
        ({"bpf_filter": "-z sh"}, "looks like a tcpdump option"),
        ({"node_interface": "eth0;reboot"}, "invalid interface name"),
    ],
)
def test_kubernetes_session_settings_are_checked_when_built(tmp_path, settings, message):
    # podcap capture POD builds these before its first API call: no helper for a bad flag.
    from podcap.capture.pods import SessionOptions

    with pytest.raises(UsageError, match=message):
        SessionOptions(output_dir=tmp_path, **settings)


@pytest.mark.parametrize(
    "text,size",
    [
        ("100MB", 100_000_000),
        ("1.5GB", 1_500_000_000),
        ("64KiB", 65536),
        ("1000", 1000),
        ("2m", 2_000_000),
    ],
)
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MB", "-5MB", "0", "ten"])
def test_bad_sizes(text):
    with pytest.raises(UsageError):
        parse_size(text)


def test_node_argv_passes_the_filter_as_one_item_after_double_dash():
    spec = CaptureSpec(container_id=f"containerd://{HEX}", bpf_filter="tcp port 80 or udp",
                       interface="any", snaplen=96, count=5, duration=7.4)  # fmt: skip
    argv = node_argv(spec)
    assert argv[:4] == ["sh", "-c", node_script(), SCRIPT_NAME]
    assert argv[-2:] == ["--", "tcp port 80 or udp"]
    args = argv[4:]
    assert args[args.index("--container-id") + 1] == HEX
    assert args[args.index("--bound") + 1] == "7"
    assert args[args.index("--count") + 1] == "5"
    assert args[args.index("--snaplen") + 1] == "96"


def test_node_script_is_valid_posix_sh():
    result = subprocess.run(["sh", "-n", "-c", node_script()], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_node_stderr_is_parsed():
    report = parse_node_stderr(
        "podcap-node: target pid=4242 netns=net:[4026532177]\n"
        "podcap-node: log: tcpdump: listening on eth0, link-type EN10MB (Ethernet)\n"
        "podcap-node: ready\n"
        "Connection to node1 closed.\n"
        "podcap-node: stats captured=10 received=12 dropped=2 written=1234 status=0\n"
    )
    assert (report.pid, report.netns, report.ready) == (4242, "net:[4026532177]", True)
    assert report.stats.captured == 10 and report.stats.dropped == 2
    assert report.stats.written == 1234
    assert report.other_lines == ["Connection to node1 closed."]
    assert report.tcpdump_lines[0].startswith("tcpdump: listening on eth0")


def test_node_argv_names_the_lookups_and_whose_namespace_is_the_nodes():
    spec = CaptureSpec(container_id=HEX, pid_lookup=("docker", "cgroup"))
    argv = node_argv(spec, transport="pod")
    args = argv[argv.index(SCRIPT_NAME) + 1 :]
    assert args[args.index("--pid-lookup") + 1] == "docker,cgroup"
    assert args[args.index("--node-netns") + 1] == "1"  # a hostPID helper: PID 1 is the node's
    plain = node_argv(CaptureSpec(container_id=HEX), transport="ssh")
    assert "--pid-lookup" not in plain and "--node-netns" not in plain  # the script's defaults


@pytest.mark.parametrize("ways", [(), ("cgroup", "runsc")])
def test_unknown_pid_lookups_are_refused(ways):
    with pytest.raises(UsageError, match="--pid-lookup"):
        CaptureSpec(container_id=HEX, pid_lookup=ways)
