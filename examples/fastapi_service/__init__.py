"""A FastAPI service that uses Longshore as a library (see README.md)."""
