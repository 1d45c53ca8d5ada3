"""annotators.simulated and eval_results.metrics

A simulated annotator panel ranks through the same service as people; the flag keeps the two apart in
exports and agreement. Evaluations store secondary measurements (readability issue rates, lines, lint
findings) beside pass@k. Both nullable or defaulted: earlier rows are people and have no such metrics.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("annotators", schema=None) as batch_op:
        batch_op.add_column(sa.Column("simulated", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("eval_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("metrics", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("eval_results", schema=None) as batch_op:
        batch_op.drop_column("metrics")
    with op.batch_alter_table("annotators", schema=None) as batch_op:
        batch_op.drop_column("simulated")
