"""Initial schema: every table of the seed's data model, its gaps closed.

Besides the tables this creates the ``vector`` extension, the triggers that
make ``points_transactions`` and ``audit_logs`` append-only, the trigger that
keeps ``users.total_points`` equal to the sum of the user's ledger rows (the
only way that column changes), and the motivational quotes the course
completion celebration draws from.

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 16:42:54.379499
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import pgvector.sqlalchemy

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table('lecturers',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lecturers')),
    sa.UniqueConstraint('name', name=op.f('uq_lecturers_name'))
    )
    op.create_index('uq_lecturers_name_lower', 'lecturers', [sa.literal_column('lower(name)')], unique=True)
    op.create_table('majors',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('slug', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_majors')),
    sa.UniqueConstraint('name', name=op.f('uq_majors_name')),
    sa.UniqueConstraint('slug', name=op.f('uq_majors_slug'))
    )
    op.create_table('material_types',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('display_name', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_material_types')),
    sa.UniqueConstraint('display_name', name=op.f('uq_material_types_display_name'))
    )
    op.create_table('motivational_quotes',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('author', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_motivational_quotes')),
    sa.UniqueConstraint('text', name=op.f('uq_motivational_quotes_text'))
    )
    op.create_table('courses',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('major_id', sa.UUID(), nullable=False),
    sa.Column('year_id', sa.Integer(), nullable=False),
    sa.Column('semester', sa.Integer(), nullable=False),
    sa.CheckConstraint('semester IN (1, 2)', name=op.f('ck_courses_semester')),
    sa.CheckConstraint('year_id BETWEEN 1 AND 4', name=op.f('ck_courses_year_id')),
    sa.ForeignKeyConstraint(['major_id'], ['majors.id'], name=op.f('fk_courses_major_id_majors')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_courses')),
    sa.UniqueConstraint('code', name=op.f('uq_courses_code'))
    )
    op.create_index('ix_courses_major_year_semester', 'courses', ['major_id', 'year_id', 'semester'], unique=False)
    op.create_table('users',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('auth0_id', sa.Text(), nullable=False),
    sa.Column('email', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), server_default='', nullable=False),
    sa.Column('role', sa.Text(), server_default='STUDENT', nullable=False),
    sa.Column('major_id', sa.UUID(), nullable=True),
    sa.Column('total_points', sa.Integer(), server_default='0', nullable=False),
    sa.Column('points_reached_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('bio', sa.Text(), nullable=True),
    sa.Column('avatar_url', sa.Text(), nullable=True),
    sa.Column('university', sa.Text(), nullable=True),
    sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("role IN ('STUDENT', 'ADMIN')", name=op.f('ck_users_role')),
    sa.CheckConstraint('email = lower(email)', name=op.f('ck_users_email_lowercase')),
    sa.ForeignKeyConstraint(['major_id'], ['majors.id'], name=op.f('fk_users_major_id_majors')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('auth0_id', name=op.f('uq_users_auth0_id')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email'))
    )
    op.create_index('ix_users_leaderboard', 'users', [sa.literal_column('total_points DESC'), 'points_reached_at', 'id'], unique=False)
    op.create_index('ix_users_major_leaderboard', 'users', ['major_id', sa.literal_column('total_points DESC'), 'points_reached_at', 'id'], unique=False)
    op.create_table('audit_logs',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('timestamp', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('actor_id', sa.UUID(), nullable=False),
    sa.Column('actor_name', sa.Text(), nullable=False),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('target_type', sa.Text(), server_default='file_request', nullable=False),
    sa.Column('target_ids', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('meta_data', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.CheckConstraint("action IN ('approve', 'reject', 'bulk_approve', 'bulk_reject', 'undo_approve', 'undo_reject', 'bulk_undo_approve', 'bulk_undo_reject')", name=op.f('ck_audit_logs_action')),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_audit_logs_actor_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_logs'))
    )
    op.create_index(op.f('ix_audit_logs_timestamp'), 'audit_logs', ['timestamp'], unique=False)
    op.create_table('file_requests',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('course_id', sa.UUID(), nullable=False),
    sa.Column('type_id', sa.UUID(), nullable=False),
    sa.Column('lecturer_id', sa.UUID(), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('academic_year', sa.Integer(), nullable=False),
    sa.Column('material_year', sa.Integer(), nullable=False),
    sa.Column('file_url', sa.Text(), nullable=False),
    sa.Column('original_filename', sa.Text(), nullable=False),
    sa.Column('sha256', sa.Text(), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('page_count', sa.Integer(), nullable=False),
    sa.Column('status', sa.Text(), server_default='pending', nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('admin_note', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'approved', 'rejected')", name=op.f('ck_file_requests_status')),
    sa.CheckConstraint('academic_year BETWEEN 1 AND 4', name=op.f('ck_file_requests_academic_year')),
    sa.CheckConstraint('material_year BETWEEN 1900 AND 2200', name=op.f('ck_file_requests_material_year')),
    sa.CheckConstraint('page_count > 0', name=op.f('ck_file_requests_page_count')),
    sa.ForeignKeyConstraint(['course_id'], ['courses.id'], name=op.f('fk_file_requests_course_id_courses')),
    sa.ForeignKeyConstraint(['lecturer_id'], ['lecturers.id'], name=op.f('fk_file_requests_lecturer_id_lecturers')),
    sa.ForeignKeyConstraint(['type_id'], ['material_types.id'], name=op.f('fk_file_requests_type_id_material_types')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_file_requests_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_file_requests'))
    )
    op.create_index('ix_file_requests_status_created', 'file_requests', ['status', 'created_at', 'id'], unique=False)
    op.create_index('ix_file_requests_user_created', 'file_requests', ['user_id', sa.literal_column('created_at DESC')], unique=False)
    op.create_index('uq_file_requests_live_course_sha256', 'file_requests', ['course_id', 'sha256'], unique=True, postgresql_where=sa.text("status IN ('pending', 'approved')"))
    op.create_table('user_course_activities',
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('course_id', sa.UUID(), nullable=False),
    sa.Column('status', sa.Text(), server_default='not_started', nullable=False),
    sa.Column('files_completed', sa.Integer(), server_default='0', nullable=False),
    sa.Column('total_files', sa.Integer(), server_default='0', nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status IN ('not_started', 'exploring', 'engaged', 'completed')", name=op.f('ck_user_course_activities_status')),
    sa.CheckConstraint('files_completed >= 0 AND total_files >= 0', name=op.f('ck_user_course_activities_counts')),
    sa.ForeignKeyConstraint(['course_id'], ['courses.id'], name=op.f('fk_user_course_activities_course_id_courses')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_course_activities_user_id_users')),
    sa.PrimaryKeyConstraint('user_id', 'course_id', name=op.f('pk_user_course_activities'))
    )
    op.create_index('ix_user_course_activities_course_id', 'user_course_activities', ['course_id'], unique=False)
    op.create_table('user_tasks',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('date', sa.Date(), nullable=False),
    sa.Column('start_hour', sa.Double(), nullable=False),
    sa.Column('duration', sa.Double(), nullable=False),
    sa.Column('priority', sa.Text(), server_default='normal', nullable=False),
    sa.Column('completed', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("priority IN ('normal', 'high', 'urgent')", name=op.f('ck_user_tasks_priority')),
    sa.CheckConstraint('char_length(title) BETWEEN 1 AND 200', name=op.f('ck_user_tasks_title')),
    sa.CheckConstraint('duration > 0 AND start_hour + duration <= 24', name=op.f('ck_user_tasks_duration')),
    sa.CheckConstraint('start_hour >= 0 AND start_hour <= 23.5 AND start_hour * 2 = floor(start_hour * 2)', name=op.f('ck_user_tasks_start_hour')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_tasks_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_tasks'))
    )
    op.create_index('ix_user_tasks_user_date', 'user_tasks', ['user_id', 'date'], unique=False)
    op.create_table('materials',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('academic_year', sa.Integer(), nullable=False),
    sa.Column('material_year', sa.Integer(), nullable=False),
    sa.Column('course_id', sa.UUID(), nullable=False),
    sa.Column('lecturer_id', sa.UUID(), nullable=False),
    sa.Column('type_id', sa.UUID(), nullable=False),
    sa.Column('uploader_id', sa.UUID(), nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('file_url', sa.Text(), nullable=False),
    sa.Column('page_count', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.Text(), nullable=False),
    sa.Column('ingest_status', sa.Text(), server_default='queued', nullable=False),
    sa.Column('chunk_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('ingest_error', sa.Text(), nullable=True),
    sa.Column('ingest_generation', sa.BigInteger(), nullable=True),
    sa.Column('ingest_attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('ingest_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ingest_finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("ingest_status IN ('queued', 'processing', 'ready', 'no_text', 'failed')", name=op.f('ck_materials_ingest_status')),
    sa.CheckConstraint('academic_year BETWEEN 1 AND 4', name=op.f('ck_materials_academic_year')),
    sa.CheckConstraint('chunk_count >= 0', name=op.f('ck_materials_chunk_count')),
    sa.CheckConstraint('material_year BETWEEN 1900 AND 2200', name=op.f('ck_materials_material_year')),
    sa.CheckConstraint('page_count > 0', name=op.f('ck_materials_page_count')),
    sa.ForeignKeyConstraint(['course_id'], ['courses.id'], name=op.f('fk_materials_course_id_courses')),
    sa.ForeignKeyConstraint(['id'], ['file_requests.id'], name=op.f('fk_materials_id_file_requests')),
    sa.ForeignKeyConstraint(['lecturer_id'], ['lecturers.id'], name=op.f('fk_materials_lecturer_id_lecturers')),
    sa.ForeignKeyConstraint(['type_id'], ['material_types.id'], name=op.f('fk_materials_type_id_material_types')),
    sa.ForeignKeyConstraint(['uploader_id'], ['users.id'], name=op.f('fk_materials_uploader_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_materials'))
    )
    op.create_index('ix_materials_course_created', 'materials', ['course_id', sa.literal_column('created_at DESC'), 'id'], unique=False)
    op.create_index('ix_materials_created', 'materials', [sa.literal_column('created_at DESC'), 'id'], unique=False)
    op.create_index('ix_materials_lecturer_id', 'materials', ['lecturer_id'], unique=False)
    op.create_index('ix_materials_type_id', 'materials', ['type_id'], unique=False)
    op.create_table('points_transactions',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('request_id', sa.UUID(), nullable=True),
    sa.Column('source_id', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("action IN ('upload_approval', 'file_completed', 'course_complete')", name=op.f('ck_points_transactions_action')),
    sa.CheckConstraint('amount <> 0', name=op.f('ck_points_transactions_amount_nonzero')),
    sa.ForeignKeyConstraint(['request_id'], ['file_requests.id'], name=op.f('fk_points_transactions_request_id_file_requests')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_points_transactions_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_transactions')),
    sa.UniqueConstraint('request_id', 'action', name=op.f('uq_points_transactions_request_id_action')),
    sa.UniqueConstraint('source_id', name=op.f('uq_points_transactions_source_id'))
    )
    op.create_index('ix_points_transactions_user_created', 'points_transactions', ['user_id', sa.literal_column('created_at DESC'), 'id'], unique=False)
    op.create_table('file_viewing_sessions',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('file_id', sa.UUID(), nullable=False),
    sa.Column('course_id', sa.UUID(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_beat_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('active_seconds', sa.Integer(), server_default='0', nullable=False),
    sa.Column('required_active_seconds', sa.Integer(), nullable=False),
    sa.Column('completion_score', sa.Double(), server_default='0', nullable=False),
    sa.Column('is_complete', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('active_seconds >= 0', name=op.f('ck_file_viewing_sessions_active_seconds')),
    sa.CheckConstraint('completion_score BETWEEN 0 AND 1', name=op.f('ck_file_viewing_sessions_completion_score')),
    sa.CheckConstraint('required_active_seconds > 0', name=op.f('ck_file_viewing_sessions_required_active_seconds')),
    sa.ForeignKeyConstraint(['course_id'], ['courses.id'], name=op.f('fk_file_viewing_sessions_course_id_courses')),
    sa.ForeignKeyConstraint(['file_id'], ['materials.id'], name=op.f('fk_file_viewing_sessions_file_id_materials'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_file_viewing_sessions_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_file_viewing_sessions'))
    )
    op.create_index('ix_file_viewing_sessions_file_id', 'file_viewing_sessions', ['file_id'], unique=False)
    op.create_index('ix_file_viewing_sessions_user_file', 'file_viewing_sessions', ['user_id', 'file_id'], unique=False)
    op.create_table('material_chunks',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('material_id', sa.UUID(), nullable=False),
    sa.Column('chunk_index', sa.Integer(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('embedding', pgvector.sqlalchemy.vector.VECTOR(dim=1536), nullable=False),
    sa.Column('embedding_model', sa.Text(), nullable=False),
    sa.Column('page_number', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('page_number IS NULL OR page_number > 0', name=op.f('ck_material_chunks_page_number')),
    sa.ForeignKeyConstraint(['material_id'], ['materials.id'], name=op.f('fk_material_chunks_material_id_materials'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_material_chunks')),
    sa.UniqueConstraint('material_id', 'chunk_index', name=op.f('uq_material_chunks_material_id_chunk_index'))
    )
    op.create_index('ix_material_chunks_embedding_hnsw', 'material_chunks', ['embedding'], unique=False, postgresql_using='hnsw', postgresql_with={'m': 16, 'ef_construction': 64}, postgresql_ops={'embedding': 'vector_cosine_ops'})
    op.create_table('user_notes',
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('file_id', sa.UUID(), nullable=False),
    sa.Column('content', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['file_id'], ['materials.id'], name=op.f('fk_user_notes_file_id_materials'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_notes_user_id_users')),
    sa.PrimaryKeyConstraint('user_id', 'file_id', name=op.f('pk_user_notes'))
    )
    op.create_table('user_recent_files',
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('file_id', sa.UUID(), nullable=False),
    sa.Column('viewed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['file_id'], ['materials.id'], name=op.f('fk_user_recent_files_file_id_materials'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_recent_files_user_id_users')),
    sa.PrimaryKeyConstraint('user_id', 'file_id', name=op.f('pk_user_recent_files'))
    )
    op.create_index('ix_user_recent_files_user_viewed', 'user_recent_files', ['user_id', sa.literal_column('viewed_at DESC')], unique=False)
    _create_triggers()
    _seed_quotes()


def downgrade() -> None:
    _drop_triggers()
    op.drop_index('ix_user_recent_files_user_viewed', table_name='user_recent_files')
    op.drop_table('user_recent_files')
    op.drop_table('user_notes')
    op.drop_index('ix_material_chunks_embedding_hnsw', table_name='material_chunks', postgresql_using='hnsw', postgresql_with={'m': 16, 'ef_construction': 64}, postgresql_ops={'embedding': 'vector_cosine_ops'})
    op.drop_table('material_chunks')
    op.drop_index('ix_file_viewing_sessions_user_file', table_name='file_viewing_sessions')
    op.drop_index('ix_file_viewing_sessions_file_id', table_name='file_viewing_sessions')
    op.drop_table('file_viewing_sessions')
    op.drop_index('ix_points_transactions_user_created', table_name='points_transactions')
    op.drop_table('points_transactions')
    op.drop_index('ix_materials_type_id', table_name='materials')
    op.drop_index('ix_materials_lecturer_id', table_name='materials')
    op.drop_index('ix_materials_created', table_name='materials')
    op.drop_index('ix_materials_course_created', table_name='materials')
    op.drop_table('materials')
    op.drop_index('ix_user_tasks_user_date', table_name='user_tasks')
    op.drop_table('user_tasks')
    op.drop_index('ix_user_course_activities_course_id', table_name='user_course_activities')
    op.drop_table('user_course_activities')
    op.drop_index('uq_file_requests_live_course_sha256', table_name='file_requests', postgresql_where=sa.text("status IN ('pending', 'approved')"))
    op.drop_index('ix_file_requests_user_created', table_name='file_requests')
    op.drop_index('ix_file_requests_status_created', table_name='file_requests')
    op.drop_table('file_requests')
    op.drop_index(op.f('ix_audit_logs_timestamp'), table_name='audit_logs')
    op.drop_table('audit_logs')
    op.drop_index('ix_users_major_leaderboard', table_name='users')
    op.drop_index('ix_users_leaderboard', table_name='users')
    op.drop_table('users')
    op.drop_index('ix_courses_major_year_semester', table_name='courses')
    op.drop_table('courses')
    op.drop_table('motivational_quotes')
    op.drop_table('material_types')
    op.drop_table('majors')
    op.drop_index('uq_lecturers_name_lower', table_name='lecturers')
    op.drop_table('lecturers')
    # The vector extension stays: other objects in the database may use it.


_APPEND_ONLY = ("points_transactions", "audit_logs")


def _create_triggers() -> None:
    op.execute(
        """
        CREATE FUNCTION lectern_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'integrity_constraint_violation';
        END
        $$
        """
    )
    for table in _APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION lectern_forbid_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION lectern_forbid_change()"
        )
    # users.total_points is a cache of SUM(ledger): the ledger insert updates
    # it in the same transaction, and nothing else may.
    op.execute(
        """
        CREATE FUNCTION lectern_apply_points() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE users
               SET total_points = total_points + NEW.amount,
                   points_reached_at = clock_timestamp()
             WHERE id = NEW.user_id;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER points_transactions_apply AFTER INSERT ON points_transactions "
        "FOR EACH ROW EXECUTE FUNCTION lectern_apply_points()"
    )
    op.execute(
        """
        CREATE FUNCTION lectern_guard_total_points() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' AND NEW.total_points <> 0 THEN
                RAISE EXCEPTION 'a new user starts with 0 points'
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            IF TG_OP = 'UPDATE' AND NEW.total_points IS DISTINCT FROM OLD.total_points
               AND pg_trigger_depth() < 2 THEN
                RAISE EXCEPTION 'users.total_points follows the ledger: insert into points_transactions'
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER users_total_points_guard BEFORE INSERT OR UPDATE OF total_points ON users "
        "FOR EACH ROW EXECUTE FUNCTION lectern_guard_total_points()"
    )


def _drop_triggers() -> None:
    op.execute("DROP TRIGGER users_total_points_guard ON users")
    op.execute("DROP TRIGGER points_transactions_apply ON points_transactions")
    for table in _APPEND_ONLY:
        op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
    op.execute("DROP FUNCTION lectern_guard_total_points()")
    op.execute("DROP FUNCTION lectern_apply_points()")
    op.execute("DROP FUNCTION lectern_forbid_change()")


# Shown by the course-completion celebration; frozen here as migration data.
_QUOTES = [
    ("The beautiful thing about learning is that nobody can take it away from you.", "B.B. King"),
    ("Education is the most powerful weapon which you can use to change the world.", "Nelson Mandela"),
    ("It always seems impossible until it's done.", "Nelson Mandela"),
    ("An investment in knowledge pays the best interest.", "Benjamin Franklin"),
    ("The expert in anything was once a beginner.", "Helen Hayes"),
    ("Success is the sum of small efforts, repeated day in and day out.", "Robert Collier"),
    ("Live as if you were to die tomorrow. Learn as if you were to live forever.", "Mahatma Gandhi"),
    ("The roots of education are bitter, but the fruit is sweet.", "Aristotle"),
    ("Learning never exhausts the mind.", "Leonardo da Vinci"),
    ("I have no special talent. I am only passionately curious.", "Albert Einstein"),
    ("It does not matter how slowly you go as long as you do not stop.", "Confucius"),
    ("Genius is one percent inspiration and ninety-nine percent perspiration.", "Thomas Edison"),
    (
        "The more that you read, the more things you will know. "
        "The more that you learn, the more places you'll go.",
        "Dr. Seuss",
    ),
    ("Education is not preparation for life; education is life itself.", "John Dewey"),
    ("Anyone who stops learning is old, whether at twenty or eighty.", "Henry Ford"),
    ("Develop a passion for learning. If you do, you will never cease to grow.", "Anthony J. D'Angelo"),
    ("Don't let what you cannot do interfere with what you can do.", "John Wooden"),
    ("You don't have to be great to start, but you have to start to be great.", "Zig Ziglar"),
    ("Believe you can and you're halfway there.", "Theodore Roosevelt"),
    (
        "The capacity to learn is a gift; the ability to learn is a skill; "
        "the willingness to learn is a choice.",
        "Brian Herbert",
    ),
    (
        "Education is the passport to the future, for tomorrow belongs to those "
        "who prepare for it today.",
        "Malcolm X",
    ),
    (
        "Study hard what interests you the most in the most undisciplined, "
        "irreverent and original manner possible.",
        "Richard Feynman",
    ),
    ("The mind is not a vessel to be filled, but a fire to be kindled.", "Plutarch"),
    ("Change is the end result of all true learning.", "Leo Buscaglia"),
    ("What we learn with pleasure we never forget.", "Alfred Mercier"),
    (
        "Learning is not attained by chance, it must be sought for with ardor "
        "and attended to with diligence.",
        "Abigail Adams",
    ),
    (
        "We are what we repeatedly do. Excellence, then, is not an act, but a habit.",
        "Will Durant",
    ),
    ("The only way to do great work is to love what you do.", "Steve Jobs"),
    ("Wisdom is not a product of schooling but of the lifelong attempt to acquire it.", "Albert Einstein"),
    ("Education's purpose is to replace an empty mind with an open one.", "Malcolm Forbes"),
    ("Knowledge is power.", "Francis Bacon"),
    ("The harder I work, the luckier I get.", "Samuel Goldwyn"),
    (
        "Perseverance is not a long race; it is many short races one after the other.",
        "Walter Elliot",
    ),
    ("Motivation is what gets you started. Habit is what keeps you going.", "Jim Ryun"),
    ("In learning you will teach, and in teaching you will learn.", "Phil Collins"),
    ("Tell me and I forget, teach me and I may remember, involve me and I learn.", "Xunzi"),
]


def _seed_quotes() -> None:
    quotes = sa.table(
        "motivational_quotes",
        sa.column("id", sa.UUID()),
        sa.column("text", sa.Text()),
        sa.column("author", sa.Text()),
    )
    op.bulk_insert(
        quotes,
        [
            {"id": uuid.uuid5(uuid.NAMESPACE_URL, f"lectern:quote:{text}"), "text": text, "author": author}
            for text, author in _QUOTES
        ],
    )
