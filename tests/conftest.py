"""Shared pytest set-up. Each area keeps its fixtures in its own module, listed here."""

pytest_plugins: list[str] = [
    "tests.lab.fixtures",
    "tests.kube_api",
    "tests.analyze_fixtures",
    "tests.netns_fixtures",
    "tests.sshd",
    # (each area adds its fixtures module here)
]
