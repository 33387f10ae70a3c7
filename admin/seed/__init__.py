"""What seed 003 clients read, in their shapes and vocabulary (SPEC §7).

- :mod:`~admin.seed.status`: the seed's status vocabulary and how run and task states map
  onto it.
- :mod:`~admin.seed.job_events`: one item per run (``/jobs/events``).
- :mod:`~admin.seed.schedule_events`: one item per firing (``/schedules/events``).
- :mod:`~admin.seed.output_tail`: the end of a run's output (the items' ``result``).
- :mod:`~admin.seed.items`: the items of an app, shared by the routes and the ``/events``
  snapshots so that both carry the same shapes.
"""
