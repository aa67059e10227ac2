"""The fleet server (issue 11): enrollment, signed agent requests, manager tokens and audit,
layered signed configuration, heartbeats and commands. FastAPI + SQLAlchemy 2 + Alembic over
SQLite or PostgreSQL; stateless, so several processes can serve one PostgreSQL database."""
