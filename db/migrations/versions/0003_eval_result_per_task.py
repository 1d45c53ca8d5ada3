"""eval_results.per_task: per-task (n, correct) counts

The report puts bootstrap intervals on pass@1 and on paired differences between policies by resampling
tasks; that needs each task's counts, which only the ``<samples>_results.jsonl`` file held (a file that
moves, is deleted, or is overwritten by the next eval of the same policy and split). Nullable: rows stored
before this revision have none.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("eval_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("per_task", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("eval_results", schema=None) as batch_op:
        batch_op.drop_column("per_task")
