"""HumanReviewGate: approvers (or a written policy) decide whether a VoG-audited model ships.

`component.py` declares the contract, with the keys of its inputs, outputs and parameters
named once in `spec_keys.py`, and `executor.py` runs it: it calls one method of the
chosen backend (`backend_api.ReviewBackend.review`). The backends are listed once, in
`backends.py`, each in its own module: `slack_backend.py` (with `slack_message.py` and
`slack_grammar.py`), `local_backend.py`, `auto_policy.py`. Every backend that asks people
decides by `decision_rule.py` and keeps a typed review record (`review_record.py`) on disk
through `review_store.py`, so that a retried execution resumes instead of asking twice.
"""
