"""HumanReviewGate: a person (or a written policy) decides whether a VoG-audited model ships.

`component.py` declares the contract, `executor.py` runs it, and each way of asking lives in
its own module: `slack_backend.py`, `local_backend.py`, `auto_policy.py`. Pending reviews are
written to disk by `review_store.py` so that a retried execution resumes instead of asking twice.
"""
