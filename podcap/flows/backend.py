"""The one seam between the flow passes' two backends: the compiled C, or the numpy code.

Both give the same columns, exactly (the tests hold them to it on every sample capture and on
random ones). ``ACTIVE`` is the one in use: ``COMPILED`` when the extension was built (a C
compiler at install time) and ``PODCAP_FLOWPASS=0`` is not set, else ``NUMPY``, which is also
the reference. ``COMPILED`` is None without the extension.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from podcap.flows import compiled, numpy_packets, numpy_sums
from podcap.flows.sums import FlowSums


@dataclass(frozen=True)
class Backend:
    """The passes over every packet that one implementation provides."""

    name: str
    # packets -> flow_id, c2s (see podcap.flows.assign_flows)
    flow_ids: Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]]
    # packets with flow_id and c2s, original (not another interface's copy) -> whether each
    # packet is a retransmission
    retransmissions: Callable[[pd.DataFrame, np.ndarray], np.ndarray]
    # packets with the four flow columns -> one entry per flow, None when no packet is in one
    flow_sums: Callable[[pd.DataFrame], FlowSums | None]


NUMPY = Backend("numpy", numpy_packets.flow_ids, numpy_packets.retransmissions,
                numpy_sums.flow_sums)  # fmt: skip
COMPILED = (
    Backend("compiled", compiled.flow_ids, compiled.retransmissions, compiled.flow_sums)
    if compiled.EXTENSION is not None
    else None
)
ACTIVE = COMPILED if COMPILED and os.environ.get("PODCAP_FLOWPASS", "1") != "0" else NUMPY
