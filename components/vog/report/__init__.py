"""The DifficultyReport: its types (summary.json in summary_model.py, its drift in
drift_model.py, the rows in report_rows.py, the JSON checks they share in json_checks.py),
the one reader of a report folder (report_format.py), the Parquet score table, the review
page, writing the folder, and the baseline a later audit compares with.

Imports compute/, vocabulary.py and inputs/, never the dataflow or the component.
"""
