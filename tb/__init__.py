"""Testbench: cocotb VIP, environments, tests and the flows behind make sim/test/bench."""
