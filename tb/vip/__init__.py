"""Verification IP: one module per protocol (streams, CSR bus, analog macro)."""
