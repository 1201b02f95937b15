"""The tiny worlds (chain, routes, code), the shipped-world loader and the real benchmarks: what a run trains and is evaluated on."""
