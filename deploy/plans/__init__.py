"""Decisions, as pure functions of what a run read from the account: what serves, what is outdated, what may
be deleted, what each step would do. Steps and dry runs both call them, so a dry run prints exactly what
the run then does. Nothing here calls AWS; tests drive them with plain data.
"""
