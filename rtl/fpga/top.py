"""``fpga_top``: the FPGA prototype, a reduced chip whose macros are digital twins, behind a UART.

Ref: docs/fpga.md (configuration, resources, how a PC drives it).
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..chip.chip import Chip, tile_member
from .pll import Ice40Pll, sync_domain
from .twin import MacroTwin
from .uart import UartBridge, baud_divisor

__all__ = ["FpgaTop", "TwinChip", "F_OSC_HZ"]

#: Board oscillator of the iCE40-HX8K Breakout Board.
F_OSC_HZ = 12_000_000


class TwinChip(wiring.Component):
    """A :class:`~cimdv.rtl.chip.chip.Chip` with a :class:`MacroTwin` behind every tile: the
    whole chip in synthesisable logic, host port as word streams. :class:`FpgaTop` puts it
    behind the UART; the raw-speed benchmark drives its streams from C++.

    The twins are the golden model's exact macro with a fixed Δ (``twin_delta``), θ
    (``twin_threshold``) and no noise; weights reach them only through the cores' own
    write-verify sequencers (a cell of code ``w`` is programmed with target ``2w + 1`` and
    tolerance 1). A core's ``T_SAMPLE + T_INTEG`` must be at least ``core_rows + 3``
    (:attr:`MacroTwin.min_sample_integ`); a shorter window raises the twin's
    ``busy_overrun`` flag instead of a wrong answer going unnoticed.

    Parameters
    ----------
    cols, rows, core_rows, core_cols : int
        The chip (default one tile of an 8 x 8 core: what the iCE40-HX8K holds, docs/fpga.md).
    g_bits : int
        Conductance-code bits of the twins.
    twin_delta, twin_threshold : int
        The twins' decrement quantum Δ (>= 1) and comparator threshold θ.
    capacity : int
        The host bridge's command buffer (words).
    watchdog, tile_watchdog : int
        The chip's watchdogs (cycles).
    crc_step_bits, shared_crc : int, bool
        The host bridge's CRC options (:class:`~cimdv.rtl.host.bridge.HostBridge`); default a
        word per cycle on the host port, as the chip.

    Members
    -------
    host_in : :py:`In(stream.Signature(32))`, host_out : :py:`Out(stream.Signature(32))`
        The chip's host port.
    busy, error : :py:`Out(1)`
        Any core busy; any core's ERROR register non-zero.
    twin_overrun, twin_error : :py:`Out(1)`
        Any twin's ``busy_overrun``; any twin's ``drive_error`` or ``overflow``.
    alarm : :py:`Out(1)`
        A bridge watchdog expiry or a NoC drop has happened since reset.

    Timing
    ------
    The chip's (one word per cycle on the host port).
    """

    def __init__(
        self,
        *,
        cols=1,
        rows=1,
        core_rows=8,
        core_cols=8,
        g_bits=4,
        twin_delta=4,
        twin_threshold=0,
        capacity=256,
        watchdog=1 << 22,
        tile_watchdog=1 << 20,
        crc_step_bits=32,
        shared_crc=False,
    ):
        for name, value, lo, hi in (
            ("twin_delta", twin_delta, 1, (1 << 15) - 1),
            ("twin_threshold", twin_threshold, -(1 << 15), (1 << 15) - 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if not lo <= value <= hi:
                raise ValueError(f"{name} must be {lo}..{hi}, not {value}")
        self.twin_delta, self.twin_threshold = twin_delta, twin_threshold
        self.chip = Chip(
            cols=cols,
            rows=rows,
            core_rows=core_rows,
            core_cols=core_cols,
            capacity=capacity,
            watchdog=watchdog,
            tile_watchdog=tile_watchdog,
            crc_step_bits=crc_step_bits,
            shared_crc=shared_crc,
            tile_module=None,
        )
        self.twins = {
            (x, y): MacroTwin(rows=core_rows, cols=core_cols, g_bits=g_bits) for y in range(rows) for x in range(cols)
        }
        super().__init__(
            {
                "host_in": In(stream.Signature(32)),
                "host_out": Out(stream.Signature(32)),
                "busy": Out(1),
                "error": Out(1),
                "twin_overrun": Out(1),
                "twin_error": Out(1),
                "alarm": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        m.submodules.chip = chip = self.chip
        wiring.connect(m, wiring.flipped(self.host_in), chip.host_in)
        wiring.connect(m, chip.host_out, wiring.flipped(self.host_out))
        overrun, drive_error = [], []
        for (x, y), twin in self.twins.items():
            m.submodules[f"twin_{x}_{y}"] = twin
            wiring.connect(m, getattr(chip, tile_member("macro", x, y)), twin.macro)
            wiring.connect(m, getattr(chip, tile_member("prog", x, y)), twin.prog)
            m.d.comb += [twin.delta.eq(self.twin_delta), twin.threshold.eq(self.twin_threshold), twin.noise_q.eq(0)]
            overrun.append(twin.busy_overrun)
            drive_error.append(twin.drive_error | twin.overflow)
        m.d.comb += [
            self.busy.eq(chip.busy.any()),
            self.error.eq(chip.error.any()),
            self.twin_overrun.eq(Cat(*overrun).any()),
            self.twin_error.eq(Cat(*drive_error).any()),
            self.alarm.eq((chip.timeouts != 0) | chip.noc_dropped),
        ]
        return m


class FpgaTop(wiring.Component):
    """The FPGA prototype: a :class:`TwinChip` with its host port on a :class:`UartBridge`, so a
    PC speaks the chip's host protocol (docs/host-protocol.md) as little-endian words over the
    serial line.

    The defaults are the configuration that fits the iCE40-HX8K with margin at 50 MHz
    (docs/fpga.md): one tile of an 8 x 8 core, its twin, and a host bridge with one CRC unit
    shared by commands and responses that folds 4 bits a cycle (a host word every 8 cycles,
    thousands of times faster than the UART). Sharing the CRC relies on the host protocol's
    rule that the host waits for a response before it sends the next command.

    Parameters
    ----------
    cols, rows, core_rows, core_cols, g_bits, twin_delta, twin_threshold, capacity, watchdog, tile_watchdog
        The :class:`TwinChip`.
    crc_step_bits, shared_crc
        The :class:`TwinChip`'s, here 4 and True (area).
    clk_mhz : float
        Requested clock. With ``pll`` the PLL's closest setting at or above it is used
        (:attr:`clk_hz`); without, the ``clk`` port must run at it.
    baud : int
        UART bit rate.
    pll : bool
        Synthesis top (``SB_PLL40_CORE`` from the 12 MHz ``clk12`` pad, reset released at
        lock); without it (simulation) the ``sync`` domain's ``clk`` and ``rst`` are ports.

    Members
    -------
    clk12 : :py:`In(1)`
        Only with ``pll``: the board oscillator (pin J3).
    uart_rx : :py:`In(1)`, uart_tx : :py:`Out(1)`
        The FT2232H channel B serial pair (pins B10, B12).
    led : :py:`Out(8)`
        D9..D2 (bit 0 = D9): heartbeat, any core busy, any core error, a twin's
        ``busy_overrun``, a twin's drive or overflow error, UART framing error, UART overrun
        or dropped word, bridge timeout or NoC drop.

    Timing
    ------
    One word every 40 bit periods on the UART each way; the chip runs at the system clock.
    """

    def __init__(
        self,
        *,
        cols=1,
        rows=1,
        core_rows=8,
        core_cols=8,
        g_bits=4,
        twin_delta=4,
        twin_threshold=0,
        capacity=256,
        watchdog=1 << 22,
        tile_watchdog=1 << 20,
        crc_step_bits=4,
        shared_crc=True,
        clk_mhz=50.0,
        baud=115_200,
        pll=True,
    ):
        if not isinstance(pll, bool):
            raise TypeError(f"pll must be a bool, not {pll!r}")
        self.pll = pll
        self._pll = Ice40Pll(f_in_hz=F_OSC_HZ, f_out_hz=clk_mhz * 1e6) if pll else None
        #: The clock the design runs at (Hz): the PLL's output, or ``clk_mhz``.
        self.clk_hz = self._pll.f_out_hz if pll else clk_mhz * 1e6
        self.divisor = baud_divisor(self.clk_hz, baud)
        self.core = TwinChip(
            cols=cols,
            rows=rows,
            core_rows=core_rows,
            core_cols=core_cols,
            g_bits=g_bits,
            twin_delta=twin_delta,
            twin_threshold=twin_threshold,
            capacity=capacity,
            watchdog=watchdog,
            tile_watchdog=tile_watchdog,
            crc_step_bits=crc_step_bits,
            shared_crc=shared_crc,
        )
        members = {"uart_rx": In(1, init=1), "uart_tx": Out(1, init=1), "led": Out(8)}
        if pll:
            members = {"clk12": In(1), **members}
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.twin_chip = core = self.core
        # The host bridge holds each response word until it is taken: no copy in the UART.
        m.submodules.uart = uart = UartBridge(divisor=self.divisor, tx_buffered=False)

        sync_domain(m, self._pll, self.clk12 if self.pll else None)

        m.d.comb += [uart.rx.eq(self.uart_rx), self.uart_tx.eq(uart.tx)]
        wiring.connect(m, uart.rx_words, core.host_in)
        wiring.connect(m, core.host_out, uart.tx_words)

        heartbeat = Signal(26)
        m.d.sync += heartbeat.eq(heartbeat + 1)
        m.d.comb += self.led.eq(
            Cat(
                heartbeat[-1],
                core.busy,
                core.error,
                core.twin_overrun,
                core.twin_error,
                uart.framing_error,
                uart.overrun | uart.word_dropped,
                core.alarm,
            )
        )
        return m
