"""SNAT versus source IP: did the peer see the Pod's address, and if not, who rewrote it and why.

Three sources of knowledge, used together by :mod:`podcap.snat.report`:

- cluster facts (:mod:`podcap.snat.facts`): pod/service CIDRs and node IPs;
- several captures of the same traffic (:mod:`podcap.snat.match`), matched by what NAT leaves alone;
- the node's rules: the ip-masq-agent ConfigMap (:mod:`podcap.snat.masq_config`) and
  ``iptables-save`` (:mod:`podcap.snat.iptables`).
"""
