"""Notification rules: who is told what about runs and schedules, and where.

The records (:mod:`store.notifications.models`), the storage contract
(:mod:`store.notifications.protocol`) and its backends (``sqlite``, ``postgres``).
"""
