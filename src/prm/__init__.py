"""PRM: a Patient Relationship Management backend."""

__version__ = "0.1.0"
