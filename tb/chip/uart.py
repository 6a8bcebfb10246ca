"""A host port over serial pins: :class:`HostClient`'s ``transact`` as UART bytes (8N1, LSB
first), each 32-bit word as four little-endian bytes (docs/fpga.md).

The driver wakes once per bit (a timer of ``divisor`` clock periods), never per clock edge.
"""

from cocotb.triggers import Event, FallingEdge, Timer, with_timeout

from cimdv.tb.vip.agent import Agent

__all__ = ["UartHostPort"]


class UartHostPort(Agent):
    """Drives ``rx`` (the DUT's serial input) and decodes ``tx`` (its serial output).

    Parameters
    ----------
    rx, tx : cocotb handles
        The DUT's ``uart_rx`` and ``uart_tx``.
    bit_ns : int
        One bit period in ns (``divisor`` x the clock period).
    timeout_ns : int
        Longest wait for a whole response.
    """

    def __init__(self, rx, tx, *, bit_ns, timeout_ns=200_000_000):
        self.rx, self.tx = rx, tx
        self.bit_ns = bit_ns
        self.timeout_ns = timeout_ns
        self.rx.value = 1
        self.bytes = []
        self.words = []
        self._complete = Event()
        self.responses = 0

    async def _send_byte(self, byte):
        for level in (0, *((byte >> i) & 1 for i in range(8)), 1):
            self.rx.value = level
            await Timer(self.bit_ns, "ns")

    async def send_break(self, frames):
        """Hold ``rx`` low for ``frames`` frame times (10 bit periods each: a break), then idle high for one frame."""
        if not isinstance(frames, (int, float)) or frames <= 1:
            raise ValueError(f"frames must be a number above 1 (longer than a frame), not {frames!r}")
        self.rx.value = 0
        await Timer(round(frames * 10 * self.bit_ns), "ns")
        self.rx.value = 1
        await Timer(10 * self.bit_ns, "ns")

    async def _run(self):
        """Receive bytes: a falling edge starts one; sample each bit in its middle."""
        while True:
            await FallingEdge(self.tx)
            await Timer(self.bit_ns + self.bit_ns // 2, "ns")
            byte = 0
            for i in range(8):
                byte |= int(self.tx.value) << i
                await Timer(self.bit_ns, "ns")
            if not int(self.tx.value):
                raise AssertionError("UART: framing error on the DUT's tx (stop bit low)")
            self.bytes.append(byte)
            if len(self.bytes) == 4:
                self.words.append(int.from_bytes(bytes(self.bytes), "little"))
                self.bytes = []
                if len(self.words) >= 3 and len(self.words) == (self.words[0] >> 16) + 3:
                    self._complete.set()

    async def transact(self, words):
        self.words, self.bytes = [], []
        self._complete.clear()
        for word in words:
            for byte in int(word).to_bytes(4, "little"):
                await self._send_byte(byte)
        await with_timeout(self._complete.wait(), self.timeout_ns, "ns")
        got, self.words = self.words, []
        self._complete.clear()
        self.responses += 1
        return got
