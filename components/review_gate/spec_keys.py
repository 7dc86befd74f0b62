"""The names of HumanReviewGate's inputs, outputs and execution properties.

One place for the keys the component spec declares and the executor, the driver and the
gate's settings look up, so that none of them retypes them. They are also the keys of the
compiled pipeline spec and of ML Metadata, so their values never change. Importing this
module imports nothing else.
"""

# Inputs. The Evaluator's blessing comes in through the argument `blessing`.
MODEL_KEY = 'model'
DIFFICULTY_REPORT_KEY = 'difficulty_report'
UPSTREAM_BLESSING_KEY = 'model_blessing'
EVALUATION_KEY = 'evaluation'
LAST_SHIPPED_KEY = 'last_shipped'

# Outputs. Not `blessing`: under TFX's Airflow runner an artifact is named
# `<output key>:<run id>`, unique per type, so the gate's ModelBlessing must not share the
# Evaluator's key.
REVIEW_BLESSING_KEY = 'review_blessing'
SHIPPED_AUDIT_KEY = 'shipped_audit'

# Execution properties: the fields of backend_api.GateSettings, lists and objects as JSON.
BACKEND_KEY = 'backend'
APPROVERS_KEY = 'approvers'
QUORUM_KEY = 'quorum'
TIMEOUT_SECONDS_KEY = 'timeout_seconds'
POLL_INTERVAL_SECONDS_KEY = 'poll_interval_seconds'
SLACK_CHANNEL_KEY = 'slack_channel'
SLACK_TOKEN_ENV_KEY = 'slack_token_env'
SLACK_API_URL_KEY = 'slack_api_url'
REPORT_URL_TEMPLATE_KEY = 'report_url_template'
AUTO_POLICY_KEY = 'auto_policy'
REVIEWS_DIR_KEY = 'reviews_dir'
# Set at run time by component.ReviewGateDriver, never by hand: part of TFX's cache key. The
# executor writes it onto the output ModelBlessing too (decision.REVIEW_PROPERTIES).
CACHE_KEY_PROPERTY = 'review_cache_key'
