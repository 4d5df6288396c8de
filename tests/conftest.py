"""Shared pytest set-up. Each area keeps its fixtures in its own module, listed here."""

pytest_plugins: list[str] = [
    "tests.lab.fixtures",
    # (each area adds its fixtures module here)
]
