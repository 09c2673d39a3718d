"""The steps: one module per task of tasks.py (`inv bake-primal` → bake_primal.py), each reading the account
through deploy/aws, deciding through deploy/plans, and acting through deploy/aws and deploy/execute.py.
`baking.py` is what the two bakes share."""
