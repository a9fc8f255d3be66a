// Simulation-only model of the analog side of one array: the sample-and-hold bank,
// the column multiplexer, the DAC and the comparator (hyflexpim.sim.sh_model).
//
// Not hardware: it stands in for the analog circuits outside the RTL, so that the
// testbench acts once per sampled bit-plane instead of once per clock cycle.
//
// * At a rising edge with `sample` high (and `rst` low) it latches the wordlines in
//   `wl_q` and counts the sample in `count` (never reset; the testbench wakes on its
//   change, reads `wl_q` and loads `held` for that read from the crossbar model,
//   Crossbar.held_values, before the next edge).
// * `held` holds one signed word of W = ADC_BITS + FRAC_BITS + 2 bits per column, on
//   the crossbar model's grid of 2**-FRAC_BITS LSB (column c in bits
//   [c*W, (c+1)*W)), clamped by the testbench to [-1 LSB, 2**ADC_BITS LSB], which
//   changes no comparison.
// * The comparator answers combinationally, as Crossbar.compare does:
//   cmp = held[sel] >= trial * 2**FRAC_BITS - 2**(FRAC_BITS-1), and 0 until the first
//   sample after a reset.
`default_nettype none
module hyflexpim_sh_bank #(
    parameter integer ROWS = 64,
    parameter integer COLS = 128,
    parameter integer SEL_BITS = 7,
    parameter integer ADC_BITS = 7,
    parameter integer FRAC_BITS = 10
) (
    input  wire                                   clk,
    input  wire                                   rst,
    input  wire [ROWS-1:0]                        wl,
    input  wire                                   sample,
    input  wire [SEL_BITS-1:0]                    sel,
    input  wire [ADC_BITS-1:0]                    trial,
    output wire                                   cmp,
    input  wire [COLS*(ADC_BITS+FRAC_BITS+2)-1:0] held,
    output reg  [ROWS-1:0]                        wl_q,
    output reg  [31:0]                            count
);
    localparam integer W = ADC_BITS + FRAC_BITS + 2;
    localparam signed [W-1:0] HALF = 1 << (FRAC_BITS - 1);

    reg loaded;
    initial begin
        wl_q = {ROWS{1'b0}};
        count = 32'd0;
        loaded = 1'b0;
    end

    always @(posedge clk) begin
        if (rst) begin
            loaded <= 1'b0;
        end else if (sample) begin
            wl_q <= wl;
            count <= count + 32'd1;
            loaded <= 1'b1;
        end
    end

    wire signed [W-1:0] column = (sel < COLS) ? held[sel * W +: W] : {W{1'b0}};
    wire signed [W-1:0] dac = $signed({2'b00, trial, {FRAC_BITS{1'b0}}}) - HALF;
    assign cmp = loaded & (column >= dac);
endmodule
`default_nettype wire
