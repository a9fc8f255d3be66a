# Clock constraint for static timing of HyFlexPIM blocks mapped to OSU 0.18 um cells.
#
# Target: the published design's digital clock, 1 GHz at 65 nm (1.000 ns). Scaled to
# 180 nm with the Stillmaker & Baas (Integration 58, 2017) delay equations at nominal
# Vdd (1.8 V at 180 nm, 1.1 V at 65 nm): delay(65) / delay(180) = 0.24239, so the
# 180 nm period is 1.000 / 0.24239 = 4.126 ns (242.4 MHz). sim/synth.py reads the
# value below and tests/test_synth.py checks it against the scaling code.
set hyflexpim_period_ns 4.126

# Blocks with a clock port get a real clock; purely combinational blocks a virtual one,
# so that input-to-output paths are still timed.
if {[llength [get_ports -quiet clk]] > 0} {
  create_clock -name clk -period $hyflexpim_period_ns [get_ports clk]
  set hyflexpim_inputs [list]
  foreach p [all_inputs] {
    if {[get_full_name $p] != "clk"} { lappend hyflexpim_inputs $p }
  }
} else {
  create_clock -name clk -period $hyflexpim_period_ns
  set hyflexpim_inputs [all_inputs]
}
# Block I/O is assumed registered at the neighbouring block: the whole period is
# available to the paths through this block.
if {[llength $hyflexpim_inputs] > 0} { set_input_delay 0 -clock clk $hyflexpim_inputs }
set_output_delay 0 -clock clk [all_outputs]
