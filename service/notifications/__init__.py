"""Notifications: which rules a run or a missed firing triggers (:mod:`.matching`), the
messages (:mod:`.messages`), their enqueueing as ``notify.deliver`` tasks (:mod:`.notifier`)
and their delivery (:mod:`.delivery`). See docs/notifications.md."""
