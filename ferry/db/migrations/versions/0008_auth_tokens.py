"""auth_tokens: tokens the auth service issued, their last use and revocation

Revision ID: 0008
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_tokens",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("issued_by", sa.String(length=200), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_auth_tokens")),
    )
    op.create_index("ix_auth_tokens_revoked", "auth_tokens", ["revoked_at", "expires_at"])
    op.create_index("ix_auth_tokens_subject", "auth_tokens", ["subject"])


def downgrade() -> None:
    op.drop_index("ix_auth_tokens_subject", table_name="auth_tokens")
    op.drop_index("ix_auth_tokens_revoked", table_name="auth_tokens")
    op.drop_table("auth_tokens")
