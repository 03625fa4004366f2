"""The foundation every other part stands on (layer 0 of docs/ARCHITECTURE.md).

Framework detection and the backend table, batch and output reading, RNGs, which process of a
run this is, the run record, TensorBoard event files: small modules that import no framework
and nothing above them.
"""
