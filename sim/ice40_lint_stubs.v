// Lint-only port declarations of the iCE40 primitives the FPGA tops instantiate (yosys' own
// cells_sim.v models them for synthesis). Used by `make lint` so Verilator can check fpga_top.v;
// never compiled into a simulation (the simulated fpga_top has pll=False and no primitive).
/* verilator lint_off UNUSEDPARAM */
/* verilator lint_off UNDRIVEN */
/* verilator lint_off UNUSEDSIGNAL */
module SB_PLL40_CORE #(
    parameter FEEDBACK_PATH = "SIMPLE",
    parameter PLLOUT_SELECT = "GENCLK",
    parameter [3:0] DIVR = 4'd0,
    parameter [6:0] DIVF = 7'd0,
    parameter [2:0] DIVQ = 3'd0,
    parameter [2:0] FILTER_RANGE = 3'd0
) (
    input REFERENCECLK,
    input RESETB,
    input BYPASS,
    output PLLOUTGLOBAL,
    output LOCK
);
endmodule
/* verilator lint_on UNUSEDSIGNAL */
/* verilator lint_on UNDRIVEN */
/* verilator lint_on UNUSEDPARAM */
