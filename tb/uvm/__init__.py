"""pyuvm environment of the chip: agents per interface, predictor, scoreboard, sequences.

Modules: :mod:`~cimdv.tb.uvm.items` (sequence items and monitor transactions), :mod:`~cimdv.tb.uvm.host_agent`,
:mod:`~cimdv.tb.uvm.macro_agent`, :mod:`~cimdv.tb.uvm.noc_monitor`, :mod:`~cimdv.tb.uvm.predictor`,
:mod:`~cimdv.tb.uvm.scoreboard`, :mod:`~cimdv.tb.uvm.stats` (the statistical check, pure numpy),
:mod:`~cimdv.tb.uvm.sequences`, :mod:`~cimdv.tb.uvm.env`. The tests are in ``cimdv.tb.chip.uvm_tests``;
docs/architecture.md ("pyuvm chip environment") draws the structure.
"""
