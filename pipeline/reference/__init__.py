"""The reference data sets (digits, tabular, text), the labels they corrupt, and the
Trainer and Transform modules the reference pipeline runs on them.

Imports the components only through their public contracts; the runners and the command
line (pipeline/) import this room, never the other way round.
"""
