"""Durable cron schedules in the store.

The contract is :class:`store.schedules.protocol.ScheduleStore` (with its
:class:`~store.schedules.protocol.LeaderLock`); ``sqlite`` and ``postgres`` implement it.
"""
