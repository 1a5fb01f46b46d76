"""Database access: the engine factory, sessions and the typed models."""
