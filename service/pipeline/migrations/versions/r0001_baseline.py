"""Baseline: the schema as the node created it before migrations existed.

A database from that time has exactly these tables and indexes and is stamped at this
revision when first opened (``service.pipeline.migrations.upgrade_to_head``).

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UID = sa.String(length=64)


def upgrade() -> None:
    """Create series, transition, instance and delivery with their indexes."""
    op.create_table(
        "series",
        sa.Column("series_instance_uid", UID, nullable=False),
        sa.Column("study_instance_uid", UID, nullable=False),
        sa.Column("calling_aet", sa.String(length=16), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("series_description", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=False),
        sa.Column("state_changed_at", sa.Float(), nullable=False),
        sa.Column("expected_instances", sa.Integer(), nullable=True),
        sa.Column("received_instances", sa.Integer(), nullable=False),
        sa.Column("first_received_at", sa.Float(), nullable=False),
        sa.Column("last_received_at", sa.Float(), nullable=False),
        sa.Column("completeness_reason", sa.Text(), nullable=False),
        sa.Column("completed_at", sa.Float(), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("pending_step", sa.String(length=16), nullable=False),
        sa.Column("output_series_uid", UID, nullable=True),
        sa.Column("output_key", sa.Text(), nullable=True),
        sa.Column("output_instances", sa.Integer(), nullable=True),
        sa.Column("algorithm", sa.String(length=128), nullable=False),
        sa.Column("drf_estimate", sa.Float(), nullable=True),
        sa.Column("inference_seconds", sa.Float(), nullable=True),
        sa.Column("written_at", sa.Float(), nullable=True),
        sa.Column("done_at", sa.Float(), nullable=True),
        sa.Column("purged_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("series_instance_uid"),
    )
    op.create_index("ix_series_study_instance_uid", "series", ["study_instance_uid"])
    op.create_index("ix_series_state", "series", ["state"])
    op.create_table(
        "transition",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("series_instance_uid", UID, nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=False),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_transition_series_instance_uid", "transition", ["series_instance_uid"])
    op.create_table(
        "instance",
        sa.Column("sop_instance_uid", UID, nullable=False),
        sa.Column("series_instance_uid", UID, nullable=False),
        sa.Column("sop_class_uid", UID, nullable=False),
        sa.Column("spool_key", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("slice_position_mm", sa.Float(), nullable=True),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["series_instance_uid"], ["series.series_instance_uid"]),
        sa.PrimaryKeyConstraint("sop_instance_uid"),
    )
    op.create_index("ix_instance_series_instance_uid", "instance", ["series_instance_uid"])
    op.create_table(
        "delivery",
        sa.Column("series_instance_uid", UID, nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["series_instance_uid"], ["series.series_instance_uid"]),
        sa.PrimaryKeyConstraint("series_instance_uid", "destination"),
    )


def downgrade() -> None:
    """Drop every table (and with them, all node state)."""
    op.drop_table("delivery")
    op.drop_index("ix_instance_series_instance_uid", table_name="instance")
    op.drop_table("instance")
    op.drop_index("ix_transition_series_instance_uid", table_name="transition")
    op.drop_table("transition")
    op.drop_index("ix_series_state", table_name="series")
    op.drop_index("ix_series_study_instance_uid", table_name="series")
    op.drop_table("series")
