"""Coverage of the regression: code coverage on Verilator (:mod:`cimdv.tb.coverage.code`) and functional coverage."""
