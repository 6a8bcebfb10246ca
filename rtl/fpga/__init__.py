"""FPGA prototype (iCE40-HX8K Breakout Board): UART, word bridge, the analog macro's digital twin, tops.

Ref: docs/fpga.md, constraints/README.md.
"""
