"""The C extension's checked signatures (podcap/flows/_flowpass.c): a wrong array is a clear
Python error naming it, never a crash or a read past an end."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podcap.flows import compiled
from podcap.flows.sums import EVENTS as EVENT_NAMES

LIBRARY = compiled.EXTENSION
N = 4
EVENTS = len(EVENT_NAMES)
FLOW_IDS = {
    "flow_id": np.int64, "c2s": bool, "file": np.int64, "src": np.int64, "dst": np.int64,
    "sport": np.int32, "dport": np.int32, "proto": np.int16, "flags": np.int16,
    "ip_version": np.int8, "seq": np.int64,
}  # fmt: skip


def flow_id_arrays(n: int = N) -> dict[str, np.ndarray]:
    """assign_flows' arrays for n packets of one conversation."""
    arrays = {name: np.zeros(n, dtype) for name, dtype in FLOW_IDS.items()}
    arrays["ip_version"][:] = 4
    return arrays


def sums_arrays(flow_id: list[int], flows: int) -> dict[str, np.ndarray]:
    n = len(flow_id)
    arrays = {
        "flow_id": np.array(flow_id, np.int64), "c2s": np.zeros(n, bool),
        "retransmission": np.zeros(n, bool), "proto": np.full(n, 6, np.int16),
        "flags": np.zeros(n, np.int16), "payload": np.zeros(n, np.int32),
        "length": np.zeros(n, np.int32), "window": np.ones(n, np.int32),
        "ts": np.arange(n, dtype=np.float64),
    }  # fmt: skip
    ints = ["first_packet", "packets", "packets_c2s", "bytes_c2s", "bytes_s2c", "payload_c2s",
            "payload_s2c", "retransmissions", "resets", "zero_windows"]  # fmt: skip
    arrays |= {name: np.empty(flows, np.int64) for name in ints}
    times = ["first_ts", "last_ts", "syn_ts", "synack_ts", "ack_ts"]
    arrays |= {name: np.empty(flows) for name in times}
    arrays |= {
        name: np.empty((flows, EVENTS), np.int64) for name in ("first_event", "history_order")
    }
    return arrays


def test_the_c_passes_are_an_extension_module_that_checks_its_arguments():
    assert LIBRARY is not None and LIBRARY.__name__ == "podcap.flows._flowpass"
    assert LIBRARY.__file__.endswith((".so", ".pyd"))  # a real extension, not ctypes
    args = flow_id_arrays()
    assert LIBRARY.assign_flows(**args) == 1  # four packets of one conversation
    assert list(args["flow_id"]) == [0] * N
    with pytest.raises(TypeError, match="sport"):
        LIBRARY.assign_flows(**args | {"sport": np.zeros(N, np.float32)})  # same size, wrong kind
    with pytest.raises(ValueError, match="src: wants 4 items, got 3"):
        LIBRARY.assign_flows(**args | {"src": np.zeros(N - 1, np.int64)})  # would read past end
    read_only = np.zeros(N, np.int64)
    read_only.flags.writeable = False  # an output the pass may not write
    with pytest.raises(TypeError, match="flow_id must be a C-contiguous writable int64 array"):
        LIBRARY.assign_flows(**args | {"flow_id": read_only})
    without_c2s = {name: array for name, array in args.items() if name != "c2s"}
    with pytest.raises(TypeError, match="missing argument 'c2s'"):
        LIBRARY.assign_flows(**without_c2s)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (
            {"sport": np.zeros(N, np.int64)},
            TypeError,
            "sport must hold int32 items, got format 'l'",
        ),
        ({"c2s": np.zeros(N, np.uint8)}, TypeError, "c2s must hold bool items"),
        ({"seq": np.zeros(N, ">i8")}, TypeError, "seq must hold int64 items"),  # byte order
        ({"seq": np.zeros(2 * N, np.int64)[::2]}, TypeError, "seq must be a C-contiguous"),
        ({"dst": [0] * N}, TypeError, "dst must be a C-contiguous int64 array, not list"),
        ({"src": None}, TypeError, "src must be"),  # only file may be None
        ({"c2s": np.zeros(N + 1, bool)}, ValueError, "c2s: wants 4 items, got 5"),
        ({"port": np.zeros(N, np.int32)}, TypeError, "unexpected argument 'port'"),
    ],
)
def test_a_wrong_array_is_named_in_a_python_error(change, error, message):
    with pytest.raises(error, match=message):
        LIBRARY.assign_flows(**flow_id_arrays() | change)


def test_file_may_be_none_and_arrays_go_by_name_only():
    assert LIBRARY.assign_flows(**flow_id_arrays() | {"file": None}) == 1
    with pytest.raises(TypeError, match="by name only"):
        LIBRARY.assign_flows(*flow_id_arrays().values())


def test_retransmissions_check_their_arrays():
    n = 3
    args = {"out": np.empty(n, bool), "flow_id": np.array([0, 0, -1]), "seq": np.zeros(n, np.int64),
            "c2s": np.ones(n, bool), "original": np.ones(n, bool),
            "proto": np.full(n, 6, np.int16), "flags": np.zeros(n, np.int16),
            "payload": np.array([5, 5, 5], np.int32)}  # fmt: skip
    LIBRARY.retransmissions(**args)
    assert list(args["out"]) == [False, True, False]  # the same 5 bytes again
    with pytest.raises(ValueError, match="original: wants 3 items, got 2"):
        LIBRARY.retransmissions(**args | {"original": np.ones(n - 1, bool)})


def test_flow_sums_take_their_counts_from_the_arrays_and_check_the_flow_ids():
    args = sums_arrays([0, -1, 1, 1], flows=2)
    LIBRARY.flow_sums(**args)
    assert list(args["packets"]) == [1, 2] and list(args["first_packet"]) == [0, 2]
    LIBRARY.flow_sums(**sums_arrays([], flows=0))  # no packets, no flows
    with pytest.raises(ValueError, match="flow_id holds ids up to 5, the outputs room for 2"):
        LIBRARY.flow_sums(**sums_arrays([0, 5], flows=2))  # would write past the outputs
    with pytest.raises(ValueError, match="resets: wants 2 items, got 3"):
        LIBRARY.flow_sums(**sums_arrays([0, 1], flows=2) | {"resets": np.empty(3, np.int64)})
    with pytest.raises(ValueError, match=f"first_event: wants {2 * EVENTS} items"):
        LIBRARY.flow_sums(**sums_arrays([0], 2) | {"first_event": np.empty((2, 8), np.int64)})


ALTERNATIVES = [np.int64, np.int32, np.int16, np.int8, np.float64, bool, np.uint8]


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(sorted(FLOW_IDS)),
        st.tuples(st.sampled_from(ALTERNATIVES), st.sampled_from([0, N - 1, N, N + 1])),
    )
)
def test_any_mix_of_dtypes_and_lengths_runs_or_raises(changes):
    args = flow_id_arrays()
    args |= {name: np.zeros(length, dtype) for name, (dtype, length) in changes.items()}
    right = all(np.dtype(args[name].dtype) == np.dtype(FLOW_IDS[name]) for name in FLOW_IDS)
    if right and len({len(array) for array in args.values()}) == 1:
        LIBRARY.assign_flows(**args)
    else:
        with pytest.raises((TypeError, ValueError)):
            LIBRARY.assign_flows(**args)
