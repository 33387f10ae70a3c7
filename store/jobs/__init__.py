"""Container jobs in the store: job definitions and their runs.

The contracts are :class:`store.jobs.protocol.JobStore` and
:class:`store.jobs.protocol.RunStore`; ``sqlite`` and ``postgres`` implement them.
"""
