"""8N1 UART and the byte <-> 32-bit word bridge of the FPGA prototype's host link.

The host port of the chip carries 32-bit words (docs/fpga.md, the host protocol); over the
board's USB UART (FT2232H channel B) each word travels as four bytes, **least significant
byte first**. Every interface here is an Amaranth ``stream`` (valid/ready): a byte or word
is transferred on a cycle where both ``valid`` and ``ready`` are high, and a source holds
its payload stable while ``valid`` is high and ``ready`` is low.

Nothing is ever dropped silently: a received byte that finds the receive FIFO full is lost
(the line cannot be paused: 8N1 has no flow control here) and sets the sticky ``overrun``
flag; a frame whose stop bit reads 0 is discarded and sets ``framing_error``; a partial word
discarded by the idle resynchronisation sets ``word_dropped``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx", "UartTx", "BytesToWords", "WordsToBytes", "UartBridge", "baud_divisor"]

#: Smallest clock cycles per bit the receiver accepts (mid-bit sampling needs a middle).
MIN_DIVISOR = 4


def _check_int(name, value, lo, hi=None):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be {bound}, not {value}")
    return value


def baud_divisor(clk_hz, baud):
    """Clock cycles per bit for ``baud`` at ``clk_hz``, rounded; refuses a rate error above 2 %.

    Parameters
    ----------
    clk_hz : int or float
        Clock frequency of the UART's domain.
    baud : int
        Bit rate.

    Returns
    -------
    int
        The divisor (>= :data:`MIN_DIVISOR`).

    Raises
    ------
    ValueError
        Non-positive arguments, a divisor below :data:`MIN_DIVISOR`, or a rate error above 2 %
        (8N1 tolerates about 4 % between the two ends in total).
    """
    if clk_hz <= 0 or baud <= 0:
        raise ValueError(f"clk_hz and baud must be positive, not {clk_hz!r} and {baud!r}")
    divisor = round(clk_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"{clk_hz} Hz is too slow for {baud} baud: {divisor} cycles per bit (at least {MIN_DIVISOR})")
    error = abs(clk_hz / divisor - baud) / baud
    if error > 0.02:
        raise ValueError(f"{baud} baud at {clk_hz} Hz is off by {error:.1%} (divisor {divisor}); at most 2 %")
    return divisor


class UartRx(wiring.Component):
    """8N1 receiver with a 2-flop synchroniser, mid-bit sampling and a receive FIFO.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, >= 4 (:func:`baud_divisor`).
    fifo_depth : int
        Bytes the receive FIFO holds while ``bytes`` is stalled (1..4096).

    Members
    -------
    rx : :py:`In(1)`
        The serial line (idle high), asynchronous to the clock: it goes through a 2-flop
        synchroniser first.
    bytes : :py:`Out(stream.Signature(8))`
        Received bytes in arrival order, from the FIFO.
    busy : :py:`Out(1)`
        A frame is being received (from the start bit's edge to the stop bit's middle).
    framing_error : :py:`Out(1)`
        Sticky: a stop bit read 0. The frame is discarded and the receiver waits for the
        line to return high (a break does not produce a stream of bad frames).
    overrun : :py:`Out(1)`
        Sticky: a good frame arrived while the FIFO was full; that byte is lost.
    clear : :py:`In(1)`
        Clears both sticky flags (a new event in the same cycle still sets them).

    Timing
    ------
    A start bit is confirmed ``divisor // 2`` cycles after the synchronised falling edge
    (a shorter low pulse is ignored), data bits are sampled every ``divisor`` cycles after
    that, LSB first, and the byte enters the FIFO at the middle of the stop bit; it is
    offered on ``bytes`` one cycle later (FIFO latency) and the receiver is ready for the
    next start bit at once, so back-to-back frames at up to ±2 % rate error are received.
    """

    def __init__(self, *, divisor, fifo_depth=16):
        self.divisor = _check_int("divisor", divisor, MIN_DIVISOR)
        self.fifo_depth = _check_int("fifo_depth", fifo_depth, 1, 4096)
        super().__init__(
            {
                "rx": In(1, init=1),
                "bytes": Out(stream.Signature(8)),
                "busy": Out(1),
                "framing_error": Out(1),
                "overrun": Out(1),
                "clear": In(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1, stages=2)
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8, depth=self.fifo_depth)
        m.d.comb += [
            self.bytes.payload.eq(fifo.r_data),
            self.bytes.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.bytes.ready),
        ]

        timer = Signal(range(d))
        bits = Signal(range(9))
        shreg = Signal(8)
        with m.If(self.clear):
            m.d.sync += [self.framing_error.eq(0), self.overrun.eq(0)]
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                m.d.comb += self.busy.eq(1)
                with m.If(timer == 0):
                    with m.If(rx):  # a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [timer.eq(d - 1), bits.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += self.busy.eq(1)
                with m.If(timer == 0):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), bits.eq(bits + 1), timer.eq(d - 1)]
                    with m.If(bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.comb += self.busy.eq(1)
                with m.If(timer == 0):
                    with m.If(rx):
                        m.d.comb += [fifo.w_data.eq(shreg), fifo.w_en.eq(fifo.w_rdy)]
                        with m.If(~fifo.w_rdy):
                            m.d.sync += self.overrun.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += self.framing_error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """8N1 transmitter.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, >= 4.

    Members
    -------
    bytes : :py:`In(stream.Signature(8))`
        Bytes to send; one is accepted when the previous frame's stop bit ends (or at once
        when idle), so a stream of bytes goes out back to back.
    tx : :py:`Out(1, init=1)`
        The serial line, driven from a flop (glitch-free), idle high.
    busy : :py:`Out(1)`
        A frame is on the line.

    Timing
    ------
    A frame is 10 bit periods of ``divisor`` cycles: start (0), 8 data bits LSB first,
    stop (1). The start bit begins on the cycle after the byte is accepted.
    """

    def __init__(self, *, divisor):
        self.divisor = _check_int("divisor", divisor, MIN_DIVISOR)
        super().__init__({"bytes": In(stream.Signature(8)), "tx": Out(1, init=1), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        frame = Signal(10, init=0x3FF)  # bit 0 is on the line
        left = Signal(range(11))  # bit periods left in the frame
        timer = Signal(range(d))
        m.d.comb += [self.tx.eq(frame[0]), self.busy.eq(left != 0)]

        period_end = timer == 0
        with m.If(left != 0):
            m.d.sync += timer.eq(timer - 1)
            with m.If(period_end):
                m.d.sync += [frame.eq(Cat(frame[1:], 1)), left.eq(left - 1), timer.eq(d - 1)]
        m.d.comb += self.bytes.ready.eq((left == 0) | ((left == 1) & period_end))
        with m.If(self.bytes.valid & self.bytes.ready):
            m.d.sync += [frame.eq(Cat(Const(0, 1), self.bytes.payload, Const(1, 1))), left.eq(10), timer.eq(d - 1)]
        return m


class BytesToWords(wiring.Component):
    """Packs a byte stream into 32-bit little-endian words.

    Members
    -------
    bytes : :py:`In(stream.Signature(8))`
        Bytes: the first of every four becomes bits 7:0 of a word, the fourth bits 31:24.
    words : :py:`Out(stream.Signature(32))`
        Packed words.
    flush : :py:`In(1)`
        Discards a partial word (1..3 bytes held); a complete word waiting on ``words`` is kept.
    dropped : :py:`Out(1)`
        One-cycle pulse: ``flush`` discarded a partial word.

    Timing
    ------
    A byte is accepted every cycle while a word is incomplete or the waiting word is taken in
    the same cycle; the word is offered on the cycle after its fourth byte.
    """

    def __init__(self):
        super().__init__(
            {
                "bytes": In(stream.Signature(8)),
                "words": Out(stream.Signature(32)),
                "flush": In(1),
                "dropped": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        word = Signal(32)
        count = Signal(range(5))  # bytes held; 4 = a complete word on `words`
        full = count == 4
        taken = self.words.valid & self.words.ready
        m.d.comb += [
            self.words.valid.eq(full),
            self.words.payload.eq(word),
            self.bytes.ready.eq(~full | self.words.ready),
        ]
        # A flush discards a partial word; a byte accepted in the same cycle starts a new word.
        drop = self.flush & (count != 0) & ~full
        m.d.comb += self.dropped.eq(drop)
        base = Signal(range(5))  # bytes held once this cycle's word transfer or flush is done
        m.d.comb += base.eq(Mux(taken | drop, 0, count))
        with m.If(self.bytes.valid & self.bytes.ready):
            with m.Switch(base[:2]):
                for k in range(4):
                    with m.Case(k):
                        m.d.sync += word[8 * k : 8 * k + 8].eq(self.bytes.payload)
            m.d.sync += count.eq(base + 1)
        with m.Else():
            m.d.sync += count.eq(base)
        return m


class WordsToBytes(wiring.Component):
    """Unpacks 32-bit words into a little-endian byte stream.

    Parameters
    ----------
    buffered : bool
        Copy each word into a register (default). Without the register (an area option) the
        bytes are taken from ``words.payload`` itself, which the stream contract keeps stable
        while it waits, and the word is taken with its last byte.

    Members
    -------
    words : :py:`In(stream.Signature(32))`
        Words to send.
    bytes : :py:`Out(stream.Signature(8))`
        Bits 7:0 of each word first, bits 31:24 last.

    Timing
    ------
    A word is accepted when none is held or while the last byte of the held one is taken,
    so a word stream leaves as an unbroken byte stream (unbuffered: with its last byte).
    """

    def __init__(self, *, buffered=True):
        if not isinstance(buffered, bool):
            raise TypeError(f"buffered must be a bool, not {buffered!r}")
        self.buffered = buffered
        super().__init__({"words": In(stream.Signature(32)), "bytes": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        if not self.buffered:
            index = Signal(2)
            taken = self.bytes.valid & self.bytes.ready
            m.d.comb += [
                self.bytes.valid.eq(self.words.valid),
                self.bytes.payload.eq(self.words.payload.word_select(index, 8)),
                self.words.ready.eq(taken & (index == 3)),
            ]
            with m.If(taken):
                m.d.sync += index.eq(index + 1)
            return m
        word = Signal(32)
        held = Signal()
        index = Signal(2)
        taken = self.bytes.valid & self.bytes.ready
        m.d.comb += [
            self.bytes.valid.eq(held),
            self.bytes.payload.eq(word.word_select(index, 8)),
            self.words.ready.eq(~held | (taken & (index == 3))),
        ]
        with m.If(taken):
            m.d.sync += index.eq(index + 1)
            with m.If(index == 3):
                m.d.sync += held.eq(0)
        with m.If(self.words.valid & self.words.ready):
            m.d.sync += [word.eq(self.words.payload), held.eq(1), index.eq(0)]
        return m


class UartBridge(wiring.Component):
    """The host link: UART pins on one side, 32-bit little-endian word streams on the other.

    ``rx`` -> :class:`UartRx` (with its FIFO) -> :class:`BytesToWords` -> ``rx_words``, and
    ``tx_words`` -> :class:`WordsToBytes` -> :class:`UartTx` -> ``tx``.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, >= 4 (:func:`baud_divisor`).
    fifo_depth : int
        Receive FIFO depth in bytes.
    flush_bits : int
        Idle resynchronisation: a partial word (1..3 bytes) is discarded once the line has
        been idle, and the FIFO empty, for this many bit periods (``word_dropped`` is set), so
        that a lost byte cannot misalign every later word. 0 disables it. The default, 2048
        bit periods (18 ms at 115200 baud), is far longer than any pause of a host that
        writes its words whole.
    tx_buffered : bool
        :class:`WordsToBytes`' ``buffered``: False saves its 32-bit register when the
        ``tx_words`` source keeps its payload stable while it waits (as a stream source must).

    Members
    -------
    rx : :py:`In(1)`
        Serial input (from the host's TXD).
    tx : :py:`Out(1)`
        Serial output (to the host's RXD).
    rx_words : :py:`Out(stream.Signature(32))`
        Words received from the host.
    tx_words : :py:`In(stream.Signature(32))`
        Words to send to the host.
    framing_error, overrun, word_dropped : :py:`Out(1)`
        Sticky error flags (:class:`UartRx`; ``word_dropped``: the idle flush discarded a
        partial word).
    clear : :py:`In(1)`
        Clears the sticky flags.

    Timing
    ------
    A word is offered on ``rx_words`` three cycles after the middle of its fourth stop bit
    (synchroniser, FIFO, packer); words to send leave back to back at 40 bit periods each.
    """

    def __init__(self, *, divisor, fifo_depth=16, flush_bits=2048, tx_buffered=True):
        self.tx_buffered = tx_buffered
        self.divisor = _check_int("divisor", divisor, MIN_DIVISOR)
        self.fifo_depth = _check_int("fifo_depth", fifo_depth, 1, 4096)
        self.flush_bits = _check_int("flush_bits", flush_bits, 0, 1 << 20)
        super().__init__(
            {
                "rx": In(1, init=1),
                "tx": Out(1, init=1),
                "rx_words": Out(stream.Signature(32)),
                "tx_words": In(stream.Signature(32)),
                "framing_error": Out(1),
                "overrun": Out(1),
                "word_dropped": Out(1),
                "clear": In(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        m.submodules.urx = urx = UartRx(divisor=self.divisor, fifo_depth=self.fifo_depth)
        m.submodules.pack = pack = BytesToWords()
        m.submodules.unpack = unpack = WordsToBytes(buffered=self.tx_buffered)
        m.submodules.utx = utx = UartTx(divisor=self.divisor)
        wiring.connect(m, urx.bytes, pack.bytes)
        wiring.connect(m, pack.words, wiring.flipped(self.rx_words))
        wiring.connect(m, wiring.flipped(self.tx_words), unpack.words)
        wiring.connect(m, unpack.bytes, utx.bytes)
        m.d.comb += [
            urx.rx.eq(self.rx),
            self.tx.eq(utx.tx),
            urx.clear.eq(self.clear),
            self.framing_error.eq(urx.framing_error),
            self.overrun.eq(urx.overrun),
        ]
        with m.If(self.clear):
            m.d.sync += self.word_dropped.eq(0)
        with m.If(pack.dropped):
            m.d.sync += self.word_dropped.eq(1)

        if self.flush_bits:
            limit = self.flush_bits * self.divisor
            idle = Signal(range(limit + 1))
            with m.If(urx.busy | urx.bytes.valid):
                m.d.sync += idle.eq(0)
            with m.Elif(idle != limit):
                m.d.sync += idle.eq(idle + 1)
            m.d.comb += pack.flush.eq(idle == limit)
        return m
