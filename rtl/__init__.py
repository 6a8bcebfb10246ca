"""Amaranth RTL of the CIM accelerator (import root ``cimdv.rtl``).

Nothing in this package imports :mod:`cimdv.tb`, :mod:`cimdv.model` or a simulator.
"""
