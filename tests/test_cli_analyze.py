"""``podcap analyze`` as a user runs it: exit codes, one-line errors, no tracebacks."""

import functools
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.helpers import podcap

podcap_analyze = functools.partial(podcap, "analyze")


def assert_one_error_line(result, *fragments):
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("podcap: error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0]


def test_default_is_the_summary_table(mixed_pcap):
    result = podcap_analyze(mixed_pcap)
    assert result.returncode == 0, result.stderr
    assert "summary" in result.stdout
    assert "default/web-0" in result.stdout and "node-a" in result.stdout
    assert result.stderr == ""


def test_contains_matches_exit_0_and_shows_the_flow(mixed_pcap):
    result = podcap_analyze(mixed_pcap, "--contains", "lbtest", "-r", "flows", "-F", "json")
    assert result.returncode == 0, result.stderr
    (flow,) = json.loads(result.stdout)["flows"]
    assert (flow["server_port"], flow["state"]) == (9000, "RSTR")


def test_nothing_matched_exits_1_like_grep(mixed_pcap):
    result = podcap_analyze(mixed_pcap, "--uri", "/never-sent", "-r", "http", "-F", "json")
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"http": []}
    assert "Traceback" not in result.stderr


def test_uri_shortcut_and_display_filter_combine(mixed_pcap):
    result = podcap_analyze(
        mixed_pcap, "--uri", "/mytest", "-Y", "tcp.dstport == 80", "-r", "http", "-F", "csv"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and "/mytest" in lines[1]


def test_reports_can_be_comma_separated_or_repeated(mixed_pcap):
    a = podcap_analyze(mixed_pcap, "-r", "summary,tcp", "-F", "json")
    b = podcap_analyze(mixed_pcap, "-r", "summary", "-r", "tcp", "-F", "json")
    assert a.returncode == b.returncode == 0
    assert list(json.loads(a.stdout)) == list(json.loads(b.stdout)) == ["summary", "tcp"]


def test_several_reports_to_a_directory(mixed_pcap, tmp_path):
    result = podcap_analyze(mixed_pcap, "-r", "flows,http", "-F", "parquet", "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["flows.parquet", "http.parquet"]


def test_a_broken_file_among_good_ones_gives_one_error_and_exit_2(mixed_pcap, tmp_path):
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    result = podcap_analyze(mixed_pcap, empty, "-F", "json")
    assert result.returncode == 2
    assert_one_error_line(result, str(empty))
    summary = json.loads(result.stdout)["summary"]
    assert [row["file"] for row in summary] == [str(mixed_pcap)]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["{missing}"], "no such file"),
        (["{dir}"], "{dir}"),
        (["{text}"], "{text}"),
        (["{pcap}", "-Y", "ip.addr == bogus"], "bogus"),
        (["{pcap}", "-Y", 'tcp contains "unclosed'], "not closed"),
        (["{pcap}", "-r", "nope"], "unknown report 'nope'"),
        (["{pcap}", "-r", "flows,http", "-F", "csv"], "-o DIR"),
        (["{pcap}", "-F", "parquet"], "-o PATH"),
        (["{pcap}", "-F", "parquet", "-o", "-"], "-o PATH"),
        (["{pcap}", "-r", "flows,http", "-F", "csv", "-o", "-"], "-o DIR"),
        (["{pcap}", "-F", "nosuch"], "unknown format 'nosuch'"),
        (["{pcap}", "--engine", "nosuch"], "unknown engine 'nosuch'"),
        (["{pcap}", "--max-rows", "-1"], "--max-rows -1"),
        (["{pcap}", "-r", ","], "--report names no report"),
        (["{pcap}", "-Y", "tcp and ("], "display filter 'tcp and ('"),
        (["{pcap}", "-Y", "nosuch.field == 3"], "nosuch.field"),
        (["{pcap}", "-o", "{missing}/out.txt"], "cannot write"),
        (["{pcap}", "-F", "html", "-o", "{dir}"], "cannot write"),
        (["{pcap}", "-r", "snat", "--facts", "{missing}"], "cannot read facts file"),
        (["{pcap}", "-r", "snat", "--facts", "{dir}"], "cannot read facts file"),
        (["{pcap}", "-r", "snat", "--facts", "{pcap}"], "facts file {pcap} is not text"),
        (["{pcap}", "-r", "snat", "--facts", "{text}"], "expected a mapping"),
        (["{pcap}", "-r", "snat", "--masq-config", "{missing}"], "cannot read ip-masq-agent"),
        (["{pcap}", "-r", "snat", "--masq-config", "{pcap}"], "ip-masq-agent config {pcap} is not"),
        (["{pcap}", "-r", "snat", "--iptables", "{dir}"], "cannot read iptables dump {dir}"),
        (["{pcap}", "-r", "snat", "--iptables", "{pcap}"], "iptables dump {pcap} is not text"),
        (["{pcap}", "-r", "snat", "--iptables", "{text}"], "not an iptables-save line"),
        # The snat inputs are read before any capture, whichever reports are asked for.
        (["{pcap}", "-r", "summary", "--iptables", "{missing}"], "cannot read iptables dump"),
        (["{pcap}", "-r", "flows", "--masq-config", "{text}"], "expected a mapping of config"),
        (["{pcap}", "--node-ip", "10.0.0.300"], "--node-ip: '10.0.0.300' is not an IP"),
        (["{pcap}", "--pod-cidr", "10.244.0.0/33"], "--pod-cidr: '10.244.0.0/33' is not a CIDR"),
    ],
)
def test_errors_are_one_line_with_exit_2(mixed_pcap, tmp_path, args, fragment):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 10)  # YAML: one string, not a mapping
    values = {
        "missing": tmp_path / "missing.pcap",
        "dir": tmp_path,
        "text": text,
        "pcap": mixed_pcap,
    }
    # Run in tmp_path: were "-o -" taken as a file name, it must not land in the repo.
    result = podcap_analyze(*[a.format(**values) for a in args], cwd=tmp_path)
    assert result.returncode == 2
    assert_one_error_line(result, fragment.format(**values))


@pytest.mark.parametrize("engine", ["native", "tshark"])
@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("missing.pcap", None, "no such file"),
        ("empty.pcap", b"", "empty file"),
        ("notes.pcap", b"hello\n" * 10, "notes.pcap"),
        ("notes.pcap.gz", gzip.compress(b"hello\n" * 10), "notes.pcap.gz"),
    ],
)
def test_bad_files_give_one_line_with_either_engine(tmp_path, engine, name, content, fragment):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    result = podcap_analyze(path, "--engine", engine)
    assert result.returncode == 2
    assert_one_error_line(result, fragment)


def test_help_documents_the_flags():
    result = podcap_analyze("--help")
    assert result.returncode == 0
    for flag in ("--report", "--filter", "--contains", "--uri", "--format", "--output", "--engine"):
        assert flag in result.stdout


def test_help_lists_every_report_and_format():
    # The help spells the choices out (it must not import pandas); this keeps it honest.
    from podcap.cli.analyze import FORMATS, REPORTS
    from podcap.render import RENDERERS
    from podcap.reports import REPORTS as BUILT_REPORTS

    assert sorted(REPORTS.split(", ")) == sorted(BUILT_REPORTS)
    assert sorted(FORMATS.split(", ")) == sorted(RENDERERS)
    help_text = " ".join(podcap_analyze("--help").stdout.split())
    assert REPORTS in help_text and FORMATS in help_text
    assert "table and html formats" in help_text  # --max-rows limits both


def test_format_is_case_insensitive(mixed_pcap):
    result = podcap_analyze(mixed_pcap, "-F", "JSON")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["summary"][0]["packets"] == 76


def test_max_rows_limits_the_table_and_html_output(mixed_pcap, tmp_path):
    every = json.loads(podcap_analyze(mixed_pcap, "-r", "packets", "-F", "json").stdout)["packets"]
    table = podcap_analyze(mixed_pcap, "-r", "packets", "--max-rows", "3")
    assert table.returncode == 0, table.stderr
    assert f"{len(every) - 3} more rows" in table.stdout
    page = tmp_path / "page.html"
    html = podcap_analyze(mixed_pcap, "-r", "packets", "-F", "html", "--max-rows", "3", "-o", page)
    assert html.returncode == 0, html.stderr
    assert f"{len(every) - 3} more rows not shown" in page.read_text()


def test_a_truncated_tail_warns_and_reports_the_readable_part(mixed_pcap, tmp_path):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(mixed_pcap.read_bytes()[:-30])  # the last record loses its end
    result = podcap_analyze(cut, "-r", "summary", "-F", "json")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("podcap: warning:") and "truncated" in result.stderr
    assert json.loads(result.stdout)["summary"][0]["packets"] == 75


def test_an_empty_capture_is_fine_without_a_filter_and_no_match_with_one(tmp_path):
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
    result = podcap_analyze(empty, "-r", "summary,flows", "-F", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["flows"] == []
    assert podcap_analyze(empty, "--contains", "x").returncode == 1


def test_progress_goes_to_a_terminal_stderr_only(mixed_pcap):
    import os
    import pty

    leader, follower = pty.openpty()
    try:
        result = podcap_analyze(
            mixed_pcap, "-F", "json", capture_output=False, text=False,
            stdout=subprocess.PIPE, stderr=follower,
        )  # fmt: skip
    finally:
        os.close(follower)
    os.close(leader)
    assert result.returncode == 0
    assert json.loads(result.stdout)["summary"][0]["packets"] == 76  # stdout stays clean


def test_engine_tshark_from_the_command_line(mixed_pcap):
    result = podcap_analyze(
        mixed_pcap, "--engine", "tshark", "--contains", "lbtest", "-r", "packets", "-F", "json"
    )
    assert result.returncode == 0, result.stderr
    assert [row["frame"] for row in json.loads(result.stdout)["packets"]] == [45]


SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"


def test_a_dash_reads_standard_input_as_tcpdump_w_dash_writes_it():
    capture = (SAMPLES / "01-http-mytest.pcap").read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "podcap", "analyze", "-", "--uri", "/mytest", "-r", "http", "-F", "csv"],
        input=capture, capture_output=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert b",/mytest," in done.stdout


def test_a_directory_reads_the_captures_in_it(tmp_path):
    for name in ("10-snat-pod.pcap", "10-snat-peer.pcap"):
        (tmp_path / name).write_bytes((SAMPLES / name).read_bytes())
    (tmp_path / "notes.txt").write_text("not a capture")
    done = podcap_analyze(tmp_path, "-r", "snat", "-F", "csv")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(",snat,") == 3  # matched across the two files of the directory
    empty = tmp_path / "empty"
    empty.mkdir()
    done = podcap_analyze(empty)
    assert done.returncode == 2
    assert_one_error_line(done, f"{empty}: a directory without capture files")


def test_tsharks_dash_r_gets_a_hint():
    done = podcap_analyze("-r", "capture.pcap")
    assert done.returncode == 2
    assert_one_error_line(done, "-r capture.pcap: -r names a report here, unlike tshark's -r FILE")
    assert "podcap analyze capture.pcap" in done.stderr


@pytest.mark.parametrize(
    ("bpf", "display"),
    [
        ("tcp port 80", "tcp.port == 80"),
        ("host 10.244.0.10 and tcp port 80", "ip.addr == 10.244.0.10 && tcp.port == 80"),
        ("src host 10.244.0.10", "ip.src == 10.244.0.10"),
        ("not port 22", "!(tcp.port == 22 || udp.port == 22)"),
    ],
)
def test_a_capture_filter_as_display_filter_gets_its_translation(bpf, display):
    done = podcap_analyze(SAMPLES / "01-http-mytest.pcap", "-Y", bpf)
    assert done.returncode == 2
    assert_one_error_line(done, f"display filter '{bpf}' is a capture filter")
    assert f"as a display filter: -Y '{display}'" in done.stderr
    # ... and the filter suggested is one podcap takes, selecting packets.
    assert podcap_analyze(SAMPLES / "01-http-mytest.pcap", "-Y", display).returncode == 0


def test_a_capture_on_a_link_type_podcap_does_not_decode_is_analyzed(tmp_path):
    """USER0 (147): well formed, unknown to the decoder. Not refused: counted, timed, said."""
    from tests.decode_fixtures import write_pcap

    path = write_pcap(tmp_path / "user0.pcap", 147, [bytes(range(40)), bytes(range(60))])
    done = podcap("analyze", path, "-F", "csv")
    assert done.returncode == 0, done.stderr
    assert done.stderr == (f"podcap: warning: {path}: 2 packets on link type LINKTYPE_147 are "
                           "counted but not decoded (--engine tshark decodes what Wireshark "
                           "knows)\n")  # fmt: skip
    header, row = done.stdout.splitlines()
    summary = dict(zip(header.split(","), row.split(","), strict=True))
    assert (summary["packets"], summary["undecoded_packets"]) == ("2", "2")
    assert summary["link_types"] == "LINKTYPE_147"
    shown = podcap("analyze", path, env={**os.environ, "COLUMNS": "100"})
    assert "undecoded_packets" in shown.stdout and shown.returncode == 0
    plain = podcap(
        "analyze", "sample_pcaps/01-http-mytest.pcap", env={**os.environ, "COLUMNS": "100"}
    )
    assert "undecoded_packets" not in plain.stdout  # 0: a terminal does not show it
