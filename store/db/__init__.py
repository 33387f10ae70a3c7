"""Database adapters shared by the stores (one module per backend)."""
