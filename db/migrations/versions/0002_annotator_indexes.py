"""indexes on rankings.annotator_id and assignments.annotator_id

Undo/edit and the progress counters look up one annotator's rankings and claims; without these indexes they
scan the whole table (measured ~1 ms at 10k rankings and growing linearly).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_rankings_annotator_id", "rankings", ["annotator_id"])
    op.create_index("ix_assignments_annotator_id", "assignments", ["annotator_id"])


def downgrade() -> None:
    op.drop_index("ix_assignments_annotator_id", table_name="assignments")
    op.drop_index("ix_rankings_annotator_id", table_name="rankings")
