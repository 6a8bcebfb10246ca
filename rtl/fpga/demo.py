"""``fpga_twin_demo``: a temporary FPGA top, one small core + its macro twin behind the UART.

A stand-in until the chip-level ``fpga_top`` (reduced multi-core chip + twins + host bridge)
exists: it exercises every block the prototype needs (PLL, UART word bridge, core, twin and
its programming port) with a minimal word protocol, so synthesis keeps all of it and the
board can run MVMs. docs/fpga.md documents the protocol.

Command words (host -> FPGA), opcode in bits 31:28:

====== =============== ==============================================================
opcode name            fields / reply
====== =============== ==============================================================
0x1    CSR_WRITE       addr = 27:20; the next word is the data; no reply
0x2    CSR_READ        addr = 27:20; reply ``0x2`` | addr << 20, then the data word
0x3    INPUT           one input beat of the core, raw layout in the low bits
0x4    START           a one-cycle start pulse of the core
0x6    TWIN_PARAM      which = 25:24 (0 Δ, 1 θ, 2 noise q), value = 15:0 (θ signed)
0x7    STATUS          reply ``0x7`` | status flags (see :data:`STATUS_BITS`)
0x8    CLEAR           clears the sticky error flags of the twin and the UART
====== =============== ==============================================================

Every output beat of the core is sent as ``0x9`` | raw beat. Other opcodes are ignored and
set the ``bad_opcode`` status flag. Weights are programmed by the core's own write-verify
sequencer, which drives the twin's programming port: ``PROG_KEY``, ``T_PULSE``, ``T_READ``,
``PROG_CELL``, ``PROG_TARGET`` (``2w + 1``, tolerance 1 for weight ``w``) and ``PROG_CTRL`` are
CSR writes (docs/fpga.md).
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..core.core import CimCore
from ..core.layouts import input_beat_layout, output_beat_layout
from .pll import Ice40Pll, sync_domain
from .twin import MacroTwin
from .uart import UartBridge, baud_divisor

__all__ = ["FpgaTwinDemo", "STATUS_BITS", "Opcode", "Reply"]

#: Board oscillator of the iCE40-HX8K Breakout Board.
F_OSC_HZ = 12_000_000


class Opcode:
    """Command opcodes of the demo protocol (bits 31:28 of a command word)."""

    CSR_WRITE = 0x1
    CSR_READ = 0x2
    INPUT = 0x3
    START = 0x4
    TWIN_PARAM = 0x6
    STATUS = 0x7
    CLEAR = 0x8


class Reply:
    """Tags (bits 31:28) of the words the FPGA sends."""

    CSR_DATA = 0x2
    STATUS = 0x7
    OUTPUT = 0x9


#: Status word bits (reply to STATUS), in order from bit 0.
STATUS_BITS = (
    "core_busy",
    "core_error",
    "twin_busy_overrun",
    "twin_drive_error",
    "twin_overflow",
    "uart_framing_error",
    "uart_overrun",
    "uart_word_dropped",
    "bad_opcode",
)


class FpgaTwinDemo(wiring.Component):
    """One ``CimCore`` driving a ``MacroTwin``, commanded over the UART word bridge.

    Parameters
    ----------
    rows, cols : int
        Geometry of the core and its twin.
    lanes : int
        Elements per stream beat, 1..3 (a beat must fit the 28 payload bits of a word).
    g_bits : int
        Bits of a conductance code in the twin.
    clk_mhz : float
        Requested clock. With ``pll`` the PLL's closest setting at or above it is used
        (:attr:`clk_hz` is the achieved one); without, the ``clk`` port must run at it.
    baud : int
        UART bit rate (the divisor is derived from :attr:`clk_hz`).
    pll : bool
        Synthesis top: the clock comes from an ``SB_PLL40_CORE`` fed by the 12 MHz ``clk12``
        pad and the reset is released by the PLL lock. Without it (simulation), the ``sync``
        domain's ``clk`` and ``rst`` are ports.

    Members
    -------
    clk12 : :py:`In(1)`
        Only with ``pll``: the board oscillator (pin J3).
    uart_rx : :py:`In(1)`
        From the FT2232H channel B TXD (pin B10).
    uart_tx : :py:`Out(1)`
        To the FT2232H channel B RXD (pin B12).
    led : :py:`Out(8)`
        D9..D2 (bit 0 = D9): heartbeat, core busy, core error, twin overrun, twin drive or
        overflow error, UART framing error, UART overrun or dropped word, PLL lock.

    Timing
    ------
    A command word is decoded on the cycle after it arrives unless a reply is pending;
    INPUT words are back-pressured by the core.
    """

    def __init__(self, *, rows=8, cols=8, lanes=2, g_bits=4, clk_mhz=50.0, baud=115_200, pll=True):
        if not isinstance(lanes, int) or not 1 <= lanes <= 3:
            raise ValueError(f"lanes must be 1..3 (a beat must fit a 28-bit word field), not {lanes!r}")
        if not isinstance(pll, bool):
            raise TypeError(f"pll must be a bool, not {pll!r}")
        self.rows, self.cols, self.lanes, self.g_bits = rows, cols, lanes, g_bits
        self.pll = pll
        self._pll = Ice40Pll(f_in_hz=F_OSC_HZ, f_out_hz=clk_mhz * 1e6) if pll else None
        #: The clock the design runs at (Hz): the PLL's output, or ``clk_mhz``.
        self.clk_hz = self._pll.f_out_hz if pll else clk_mhz * 1e6
        self.divisor = baud_divisor(self.clk_hz, baud)
        self.core = CimCore(rows=rows, cols=cols, lanes=lanes)
        self.twin = MacroTwin(rows=rows, cols=cols, g_bits=g_bits)
        members = {"uart_rx": In(1, init=1), "uart_tx": Out(1, init=1), "led": Out(8)}
        if pll:
            members = {"clk12": In(1), **members}
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        core, twin = self.core, self.twin
        m.submodules.core = core
        m.submodules.twin = twin
        m.submodules.bridge = bridge = UartBridge(divisor=self.divisor)
        wiring.connect(m, core.macro, twin.macro)
        wiring.connect(m, core.prog, twin.prog)

        lock = sync_domain(m, self._pll, self.clk12 if self.pll else None)

        m.d.comb += [bridge.rx.eq(self.uart_rx), self.uart_tx.eq(bridge.tx)]

        # ---- command decoding -----------------------------------------------------------------
        # The command is registered first (one word at a time): the core's input port sees
        # flops only, which keeps the bridge's logic out of the core's own paths.
        cmd = Signal(32)
        cmd_valid = Signal()
        m.d.comb += bridge.rx_words.ready.eq(~cmd_valid)
        with m.If(bridge.rx_words.valid & ~cmd_valid):
            m.d.sync += [cmd.eq(bridge.rx_words.payload), cmd_valid.eq(1)]
        opcode = cmd[28:32]
        reply = Signal(32)
        reply_valid = Signal()
        csr_read_q = Signal()
        csr_data_next = Signal()  # the next command word is the data of a CSR_WRITE
        csr_addr = Signal(8)
        reply_next = Signal(32)  # second word of a two-word reply (CSR_READ)
        reply_more = Signal()
        bad_opcode = Signal()
        clear = Signal()
        in_bits = input_beat_layout(self.lanes).size
        assert in_bits <= 28 and output_beat_layout(self.lanes).size <= 28

        can_act = Signal()
        m.d.comb += can_act.eq(cmd_valid & ~reply_valid & ~csr_read_q)
        is_input = (opcode == Opcode.INPUT) & ~csr_data_next
        m.d.comb += [
            core.inputs.payload.eq(cmd[:in_bits]),
            core.inputs.valid.eq(can_act & is_input),
            core.csr.addr.eq(Mux(csr_data_next | csr_read_q, csr_addr, cmd[20:28])),
            core.csr.w_data.eq(cmd),
            twin.clear.eq(clear),
            bridge.clear.eq(clear),
        ]
        with m.If(can_act & (~is_input | core.inputs.ready)):
            m.d.sync += cmd_valid.eq(0)
        status = Cat(
            core.busy,
            core.error,
            twin.busy_overrun,
            twin.drive_error,
            twin.overflow,
            bridge.framing_error,
            bridge.overrun,
            bridge.word_dropped,
            bad_opcode,
        )
        assert len(status) == len(STATUS_BITS)
        accept = can_act & ~is_input
        delta = Signal(16, init=1)
        threshold = Signal(16)
        noise_q = Signal(16)
        m.d.comb += [twin.delta.eq(delta), twin.threshold.eq(threshold), twin.noise_q.eq(noise_q)]
        with m.If(accept & csr_data_next):
            m.d.comb += core.csr.w_stb.eq(1)
            m.d.sync += csr_data_next.eq(0)
        with m.Elif(accept):
            with m.Switch(opcode):
                with m.Case(Opcode.CSR_WRITE):
                    m.d.sync += [csr_addr.eq(cmd[20:28]), csr_data_next.eq(1)]
                with m.Case(Opcode.CSR_READ):
                    m.d.comb += core.csr.r_stb.eq(1)
                    m.d.sync += [csr_addr.eq(cmd[20:28]), csr_read_q.eq(1)]
                with m.Case(Opcode.START):
                    m.d.comb += core.start.eq(1)
                with m.Case(Opcode.TWIN_PARAM):
                    with m.Switch(cmd[24:26]):
                        with m.Case(0):
                            m.d.sync += delta.eq(cmd[:16])
                        with m.Case(1):
                            m.d.sync += threshold.eq(cmd[:16])
                        with m.Case(2):
                            m.d.sync += noise_q.eq(cmd[:16])
                with m.Case(Opcode.STATUS):
                    m.d.sync += [reply.eq((Reply.STATUS << 28) | status), reply_valid.eq(1)]
                with m.Case(Opcode.CLEAR):
                    m.d.comb += clear.eq(1)
                    m.d.sync += bad_opcode.eq(0)
                with m.Default():
                    m.d.sync += bad_opcode.eq(1)

        with m.If(csr_read_q):
            m.d.sync += [
                csr_read_q.eq(0),
                reply.eq((Reply.CSR_DATA << 28) | (csr_addr << 20)),
                reply_next.eq(core.csr.r_data),
                reply_more.eq(1),
                reply_valid.eq(1),
            ]

        # ---- words to the host: a pending reply first, then the core's output beats ----------
        tx = bridge.tx_words
        m.d.comb += [
            tx.valid.eq(reply_valid | core.outputs.valid),
            tx.payload.eq(Mux(reply_valid, reply, (Reply.OUTPUT << 28) | core.outputs.payload.as_value())),
            core.outputs.ready.eq(tx.ready & ~reply_valid),
        ]
        with m.If(reply_valid & tx.ready):
            m.d.sync += [reply.eq(reply_next), reply_more.eq(0), reply_valid.eq(reply_more)]

        # ---- LEDs ---------------------------------------------------------------------------
        heartbeat = Signal(26)
        m.d.sync += heartbeat.eq(heartbeat + 1)
        m.d.comb += self.led.eq(
            Cat(
                heartbeat[-1],
                core.busy,
                core.error,
                twin.busy_overrun,
                twin.drive_error | twin.overflow,
                bridge.framing_error,
                bridge.overrun | bridge.word_dropped,
                lock,
            )
        )
        return m
