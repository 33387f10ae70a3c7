"""One module per resource; each exposes ``router`` (mounted under ``/admin/v1``)."""
