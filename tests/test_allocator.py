"""The analyze command keeps freed memory for its next arrays (podcap.analysis.allocator):
measured by the page faults a second array of the same size costs, in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, resource, sys
import numpy as np
from podcap.analysis.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
np.ones(2_000_000)  # 16 MB, touched, freed
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(2_000_000)
print(json.dumps({"kept": kept, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _probe(mode: str, **env: str) -> dict:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True, env=environment)  # fmt: skip
    return json.loads(out.stdout)


def test_a_freed_array_is_reused_without_faulting_its_pages_in_again():
    plain, kept = _probe("plain"), _probe("keep")
    assert kept["kept"] is True
    # 16 MB is 3,900 pages of 4 KiB: glibc's default maps it afresh and its pages fault in
    # again (fewer where some come as 2 MiB huge pages: 327 on the machine this was written
    # on); kept, it is the same memory, already in place.
    assert plain["faults"] > 100, plain
    assert kept["faults"] * 10 < plain["faults"], (plain, kept)


def test_the_users_own_malloc_settings_win():
    assert _probe("keep", MALLOC_MMAP_THRESHOLD_="131072")["kept"] is False
