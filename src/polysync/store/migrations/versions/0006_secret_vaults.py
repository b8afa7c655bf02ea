"""Secret Vaults (D15): the registered Azure Key Vaults `vault://` references are read from.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Frozen copies of the column types in polysync.store.tables (see 0001).
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "secret_vaults",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("vault_url", sa.Text(), nullable=False),
        sa.Column("auth", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("options", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_secret_vaults"),
        sa.UniqueConstraint("name", name="uq_secret_vaults_name"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("secret_vaults")
