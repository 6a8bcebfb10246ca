"""Core-level cocotb environment and tests."""
