"""Alembic migrations of the Yinxin schema (run by portal.db.upgrade_database).

To add a revision after changing models: `python -m portal.migrations revision "what changed"`,
then read the generated file and fix what autogenerate cannot know (data, renames).
"""
