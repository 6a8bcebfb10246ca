"""Golden model of the CIM core (pure Python + numpy; imports neither amaranth nor cocotb)."""
