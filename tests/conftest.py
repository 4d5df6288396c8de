"""Shared pytest set-up. Each area keeps its fixtures in its own module, listed here."""

pytest_plugins: list[str] = [
    "testbed.lab.fixtures",
    "testbed.kube_api",
    "tests.analyze_fixtures",
    "tests.netns_fixtures",
    "tests.kube_fixtures",
    "tests.diagnose_helpers",
    "testbed.sshd",
    # (each area adds its fixtures module here)
]


def pytest_sessionfinish(session, exitstatus):
    """A skipped test is not a passed one: a run that skipped anything fails.

    Tests skip only when a tool they drive (tshark, chromium, ...) is missing; scripts/test.sh
    installs all of them, so a skip means the set-up is broken and must not look green.
    """
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and exitstatus == 0:
        reporter.write_line(
            f"FAILED: {skipped} test(s) skipped; install what they need (bash scripts/install-system-deps.sh)",
            red=True,
        )
        session.exitstatus = 1
