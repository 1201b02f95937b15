"""Analyses beside training: error recovery, DPAW weight studies, the world's preconditions and its gate."""
