"""Chip-level testbench: packets, the host driver, environments and tests."""
