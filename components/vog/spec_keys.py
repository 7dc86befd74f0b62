"""The names of VarianceOfGradients' inputs, outputs and execution properties.

One place for the keys the component spec declares and the executor looks up, so that
neither retypes them. Importing this module imports nothing else.
"""

# Inputs.
EXAMPLES_KEY = 'examples'
MODEL_RUN_KEY = 'model_run'
SCHEMA_KEY = 'schema'
BASELINE_KEY = 'baseline'
TRANSFORM_GRAPH_KEY = 'transform_graph'

# Outputs.
SCORED_EXAMPLES_KEY = 'scored_examples'
DIFFICULTY_REPORT_KEY = 'difficulty_report'

# Execution properties: every VogSettings field as one JSON object, and the user module.
SETTINGS_KEY = 'vog_settings'
MODULE_FILE_KEY = 'module_file'
