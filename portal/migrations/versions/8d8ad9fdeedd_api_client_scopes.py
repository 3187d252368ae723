"""api client scopes

Revision ID: 8d8ad9fdeedd
Revises: fc92138ece02
Create Date: 2026-11-26 20:25:11.264458
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '8d8ad9fdeedd'
down_revision: str | Sequence[str] | None = 'fc92138ece02'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Clients made before scopes existed keep what every client could do then, except the
# final and data-releasing acts, which an operator now grants explicitly.
EXISTING_CLIENTS_SCOPES = "licence:issue licence:read seal:stamp"


def upgrade() -> None:
    with op.batch_alter_table('api_client', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'scopes',
                sa.String(length=200),
                nullable=False,
                server_default=EXISTING_CLIENTS_SCOPES,
            )
        )
    with op.batch_alter_table('api_client', schema=None) as batch_op:
        batch_op.alter_column('scopes', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('api_client', schema=None) as batch_op:
        batch_op.drop_column('scopes')
