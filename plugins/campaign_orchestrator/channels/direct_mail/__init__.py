"""The direct-mail channel: one extract of postal addresses per run (see :mod:`.export`).

Nothing is sent message by message, so there is no renderer or sender: the DAG runs one
export task after the step's targeting instead of planned send batches.
"""
