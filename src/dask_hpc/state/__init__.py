"""A session's state dir and what it holds: the session's settings and the job ledger.

Shared by every process of a session (commands, notebooks, the scheduler job and
its keeper), so it sits below all of them: it imports only the batch systems,
the spec and the private-file helpers.
"""
