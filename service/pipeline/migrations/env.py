"""Alembic environment of the state database.

At run time the store passes an open connection (``config.attributes["connection"]``) inside
its own locked transaction; from the ``alembic`` command line the URL comes from
``-x url=...`` or ``sqlalchemy.url``.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, create_engine

from service.pipeline.schema import metadata


def _configure(connection: Connection) -> None:
    # Batch mode: SQLite cannot ALTER most of a table, Alembic copies it instead.
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    url = url or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass -x url=... or set sqlalchemy.url")
    return url


def run() -> None:
    """Run the migrations Alembic asked for, on the store's connection or a new one."""
    if context.is_offline_mode():
        context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    if context.config.config_file_name is not None:
        fileConfig(context.config.config_file_name)  # the alembic command line only
    engine = create_engine(_url())
    try:
        with engine.begin() as fresh:
            _configure(fresh)
    finally:
        engine.dispose()


run()
