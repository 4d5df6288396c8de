#!/usr/bin/env bash
# Installs the system tools podcap's tests drive for real: tcpdump, tshark, iproute2,
# iptables, nftables, OpenSSH server and client, sudo (--ssh-sudo), curl, ping, bpftrace
# (--drops), Chromium (HTML report screenshots); the container runtimes the tests drive for
# real (docker.io, containerd with runc, podman) and busybox-static, the one binary of the test
# image; and gcc with the Python headers, which build podcap's C flow pass (podcap/flows/*.c).
# Non-interactive; installs only what is missing, so a second run costs nothing.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have tcpdump || need+=(tcpdump)
have tshark || need+=(tshark)
have ip || need+=(iproute2)
have iptables || need+=(iptables)
have sshd || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
have ssh || need+=(openssh-client)
have sudo || need+=(sudo)
have curl || need+=(curl)
have ping || need+=(iputils-ping)
have nft || need+=(nftables)
have bpftrace || need+=(bpftrace)
have nsenter || need+=(util-linux)
have chromium || need+=(chromium)
# dockerd, not docker: a docker client alone (no engine) may be on PATH already.
have dockerd || need+=(docker.io)
have containerd && have ctr || need+=(containerd)
have runc || need+=(runc)
have podman || need+=(podman)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
have gcc || need+=(gcc)
python3 -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' ||
  need+=(python3-dev)

if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark's package asks whether non-root users may capture; answer it up front.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  # No service starts at install (these machines have no init to run one; the tests start
  # dockerd and containerd themselves): a policy-rc.d that says no, unless one is there.
  own_policy=''
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
fi
