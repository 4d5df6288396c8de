"""podcap.netns.enter: targets, the shell's argv and prompt (and attach's exit status)."""

from __future__ import annotations

import pytest

from podcap import netns
from podcap.errors import UsageError


def test_target_needs_exactly_one_of_id_and_pid():
    with pytest.raises(UsageError):
        netns.Target()
    with pytest.raises(UsageError):
        netns.Target(container_id="containerd://" + "a" * 64, pid=5)
    assert netns.Target(pid=42).name == "pid 42"
    assert netns.Target(container_id="cri-o://0123456789abcdef").name == "container 0123456789ab"


def test_shell_prompt_names_the_pod_and_node():
    entered = netns.Entered(netns.Target(pid=42, label="shop/web-0"), "node-a", "local", 42, "")
    argv = netns.shell_argv(entered)
    assert argv[:5] == ["nsenter", "-n", "-t", "42", "--"]
    assert "PS1=[podcap netns shop/web-0 @ node-a] # " in argv
    assert argv[-1] == "-i"
    assert netns.shell_argv(entered, interactive=False)[-1] == "-s"
    assert netns.exit_status(-15) == 143 and netns.exit_status(3) == 3
