"""The prediction history and the model registry's records: SQLAlchemy models, engine, queries."""
