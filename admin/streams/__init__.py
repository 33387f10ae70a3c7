"""The server-sent events engine: ``GET /events`` and a followed run's output use it alike.

- :mod:`~admin.streams.frames`: how a message is written (frames, heartbeats, keep-alive
  comments), and each stored event's frame encoded once per app.
- :mod:`~admin.streams.response`: the ``text/event-stream`` response.
- :mod:`~admin.streams.resume`: the resume point (``Last-Event-ID`` / ``?lastEventId=``).
- :mod:`~admin.streams.reader`: a stream's store subscription, read in batches, renewed
  after a drop, ended from outside.
- :mod:`~admin.streams.hub`: the open streams of one app and what they share; ending them
  all before the server stops (:func:`end_event_streams`).
- :mod:`~admin.streams.snapshots`: ``/events``' snapshot events, computed once for all
  streams.
- :mod:`~admin.streams.event_stream` and :mod:`~admin.streams.run_output`: the two streams.
- :mod:`~admin.streams.options`: their timing.

Cost with many clients (``bench/api.py``: 200 streams): the work that does not depend on
the client is done once per app and shared (frames, snapshots); a stream wakes once per
batch of ready events and writes the batch as one chunk, straight to the ASGI server (no
task or encoding per event and client).
"""

from admin.streams.hub import close_streams, end_event_streams, streams_of

__all__ = ["close_streams", "end_event_streams", "streams_of"]
