"""The ``Analysis`` every report reads: packets of all files, filtered, with their flows."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class Analysis:
    """What the reports see.

    ``all_packets`` holds every packet of every file (``file`` column, plus ``flow_id``,
    ``c2s`` and ``retransmission``); ``matched`` says which ones the filter selected (all
    when there is no filter). ``packets`` are the matching packets; ``flows`` the flows that
    hold at least one of them, computed once over all packets so their counts are whole.
    """

    all_packets: pd.DataFrame
    matched: np.ndarray
    captures: dict[str, Any]  # path -> podcap.decode.Capture
    sidecars: dict[str, dict] = field(default_factory=dict)
    snat_inputs: Any = None  # the podcap.snat.inputs.SnatInputs the user gave, or None
    filter_text: str | None = None
    files_given: int = 1  # files asked for, readable or not: several => a ``file`` column

    @property
    def files(self) -> list[str]:
        return list(self.captures)

    @property
    def single_file(self) -> bool:
        return self.files_given == 1

    @cached_property
    def packets(self) -> pd.DataFrame:
        return self.all_packets[self.matched]

    @cached_property
    def all_flows(self) -> pd.DataFrame:
        """Every flow of every file (``podcap.flows.flow_table``), cached."""
        from podcap.flows import flow_table

        return flow_table(self.all_packets)

    @cached_property
    def matched_flow_ids(self) -> np.ndarray:
        ids = self.packets["flow_id"].to_numpy()
        return np.unique(ids[ids >= 0])

    @cached_property
    def flows(self) -> pd.DataFrame:
        """The flows the matching packets belong to (all flows without a filter)."""
        flows = self.all_flows
        if self.filter_text is None:
            return flows
        return flows[flows["flow_id"].isin(self.matched_flow_ids)].reset_index(drop=True)

    @cached_property
    def http(self) -> pd.DataFrame:
        """Every HTTP request of every file with its response (``reports.http``), cached."""
        from podcap.reports.http import http_requests

        return http_requests(self.all_packets, self.all_flows, self.http_messages)

    @cached_property
    def http_messages(self) -> pd.DataFrame:
        """Every HTTP message of every file, where Wireshark's reassembly finds it
        (``podcap.flows.messages``), cached; the table an ``http.*`` filter already built
        for these packets is the same one (``podcap.dfilter.fields.http_messages``)."""
        from podcap.dfilter.fields import http_messages

        return http_messages(self.all_packets)

    @cached_property
    def dns_messages(self) -> pd.DataFrame:
        """Every DNS message of every file (``podcap.flows.dns``), read once, cached."""
        from podcap.flows.dns import dns_messages

        return dns_messages(self.all_packets)

    @cached_property
    def dns_exchanges(self) -> pd.DataFrame:
        """Every DNS query with its response (``podcap.flows.dns``), cached: the dns and
        dns_servers reports read the same."""
        from podcap.flows.dns import dns_exchanges

        return dns_exchanges(self.all_packets, self.dns_messages)

    @cached_property
    def icmp_errors(self) -> pd.DataFrame:
        """Every ICMP error with the flow it quotes (``podcap.flows.icmp``), cached: the icmp
        report and the MTU black holes of the tcp report read the same."""
        from podcap.flows.icmp import icmp_errors

        return icmp_errors(self.all_packets, self.all_flows)

    @cached_property
    def file_counts(self) -> pd.DataFrame:
        """The summary's numbers per file (``reports.summary.file_counts``), cached."""
        from podcap.reports.summary import file_counts

        return file_counts(self)

    @cached_property
    def problems(self) -> pd.DataFrame:
        """TCP problems of the selected flows (``reports.tcp``), cached."""
        from podcap.flows.mtu import mtu_black_holes, with_icmp
        from podcap.flows.mtu_headers import connection_overlays, with_headers
        from podcap.reports.tcp import tcp_problems

        black_holes = mtu_black_holes(self.all_packets)
        if len(black_holes):  # what the ICMP and headers say of them, read only for those
            black_holes = with_headers(
                with_icmp(black_holes, self.icmp_errors), self.all_packets,
                connection_overlays(self.tcp_connections, self.all_packets,
                                    black_holes["flow_id"])
                if len(self.files) > 1 else None,
            )  # fmt: skip
        return tcp_problems(self.flows, black_holes, self.invalid_resets)

    @cached_property
    def invalid_resets(self) -> pd.DataFrame:
        """Connections reset after a packet conntrack marked INVALID
        (``podcap.flows.invalid_resets``), cached: the tcp and conntrack reports read them."""
        from podcap.flows.invalid_resets import resets_after_invalid

        return resets_after_invalid(self.all_packets, self.all_flows)

    @cached_property
    def tcp_connections(self) -> list:
        """Every TCP connection of every file, matched across the capture points
        (``snat.match``), cached: the snat report and ``plots.snat_hops`` read the same matches."""
        from podcap.snat.match import match_connections, tcp_observations

        return match_connections(tcp_observations(self.all_packets))

    @cached_property
    def journeys(self):
        """The capture points in path order and each connection along them
        (``podcap.path.journey.line_up``), cached: the path and hops reports read the same."""
        from podcap.path.datagrams import datagram_exchanges, icmp_refusals
        from podcap.path.journey import line_up

        packets = self.all_packets
        refusals = icmp_refusals(packets)  # the datagrams' and the TCP connections' alike
        connections = self.tcp_connections + datagram_exchanges(packets, refusals)
        return line_up(self.files, packets, self.all_flows, connections, self.sidecars, refusals)

    @cached_property
    def kernel_drops(self) -> pd.DataFrame:
        """The drops the nodes' watchers recorded (``--drops``), from the files the sidecars
        name, each placed (``podcap.path.kernel_drops``), cached."""
        from podcap.path.kernel_drops import drop_table

        return drop_table(self.sidecars)

    @cached_property
    def snat(self) -> pd.DataFrame:
        """SNAT verdicts of the selected connections (``snat.report``), cached: ``dnat`` reuses them."""
        from podcap.snat.report import snat_report

        return snat_report(self)

    def without_file_column(self, table: pd.DataFrame) -> pd.DataFrame:
        """Reports show the ``file`` column only when several files were analyzed."""
        return table.drop(columns=["file"], errors="ignore") if self.single_file else table
