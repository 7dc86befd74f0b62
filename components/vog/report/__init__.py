"""The DifficultyReport: its format and the one reader of a report folder
(report_format.py), the Parquet score table, the review page, writing the folder, and
the baseline a later audit compares with.

Imports compute/, vocabulary.py and inputs/, never the dataflow or the component.
"""
