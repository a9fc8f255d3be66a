"""IEEE 754 binary16 golden model of the SFU, over uint16 bit-pattern arrays.

Element-wise operators live in :mod:`.ops`, the exponential and the vector functions
in :mod:`.functions`; this package re-exports the stable public names.
"""
