"""Language models: which tokens a per-token loss counts, causal-LM detection, on-policy
settings. Framework-neutral (no torch, no tensorflow); the tensor parts live in
``adapters/<fw>/tokens.py`` and ``adapters/torch/on_policy.py`` (docs/language_models.md)."""
