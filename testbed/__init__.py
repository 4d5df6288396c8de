"""podcap's test bed: the lab of network namespaces, the in-test Kubernetes API server and the
loopback sshd. Imported by tests/, bench/ and scripts/; not part of the podcap wheel."""
