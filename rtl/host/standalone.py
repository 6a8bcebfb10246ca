"""The host bridge alone as a Verilog top (``cimdv-gen bridge``): the rogue-tile bench's DUT."""

from .bridge import HostBridge

__all__ = ["bridge_top"]


def bridge_top(
    *, cols=2, rows=2, core_rows=32, core_cols=32, capacity=256, watchdog=2000, crc_step_bits=32, shared_crc=False
):
    """A :class:`HostBridge` with small default parameters, so that it can be a top of its own.

    The bridge's members are already a clean top (its host streams, its request and response
    network ports as flit streams, its counters), so no wrapper component is needed: the bench
    (``tb/host/bridge_tests.py``) stands in for the two meshes and every tile, and can answer
    like a tile that breaks the protocol, which the chip's real tiles never do.

    Parameters
    ----------
    cols, rows : int
        The grid of tiles the bridge addresses (default 2 x 2, as the reduced chip).
    core_rows, core_cols : int
        Every core's geometry (default 32 x 32).
    capacity, watchdog, crc_step_bits, shared_crc
        As :class:`HostBridge`; the watchdog is short (2000 cycles) because the bench answers at once.

    Returns
    -------
    HostBridge
        Members ``host_in``, ``host_out``, ``req``, ``rsp``, ``timeouts``, ``stale``; one word or
        flit per cycle on every port (:class:`HostBridge`).
    """
    return HostBridge(
        cols=cols,
        rows=rows,
        core_rows=core_rows,
        core_cols=core_cols,
        capacity=capacity,
        watchdog=watchdog,
        crc_step_bits=crc_step_bits,
        shared_crc=shared_crc,
    )
