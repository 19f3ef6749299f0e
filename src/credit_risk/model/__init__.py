"""The credit-risk model, one module per lifecycle stage.

``data`` (read, split) → ``train`` → ``evaluate`` / ``baseline`` → ``gate`` →
``card``; ``pipeline`` runs them in order. Serving needs only ``package`` and
``reasons``, which import neither scikit-learn nor matplotlib; keep this file
free of imports so that importing ``credit_risk.model.package`` stays light.
"""
