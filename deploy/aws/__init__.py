"""AWS access, grouped by resource: one module per kind of thing the tool reads, creates and deletes.

`clients` holds the boto3 clients of a run (logging, counting, the dry-run guard); the other modules
know one resource each and hold no decisions: those live in deploy/plans.
"""
