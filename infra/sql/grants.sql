-- Privileges of the functions' database users, and a check of pgvector.
--
-- cloudbuild.yaml runs this as the migrator (the owner of every table) right
-- after `lectern migrate`, in the same transaction as
--   SELECT set_config('lectern.function_users', '<user>,<user>,...', true)
-- where the users are `terraform output function_db_users`. It is one
-- statement (any driver can send it), idempotent, and has no percent signs
-- (pg8000 would read them as parameter markers).
DO $grants$
DECLARE
    function_user text;
    vector_version int[];
BEGIN
    -- Search relies on pgvector 0.8 (iterative HNSW scans). Move the extension
    -- to the newest version the server offers, then insist on 0.8.
    IF EXISTS (
        SELECT FROM pg_available_extensions
        WHERE name = 'vector' AND installed_version IS DISTINCT FROM default_version
          AND installed_version IS NOT NULL
    ) THEN
        ALTER EXTENSION vector UPDATE;
    END IF;
    SELECT string_to_array(split_part(extversion, '-', 1), '.')::int[] INTO vector_version
    FROM pg_extension WHERE extname = 'vector';
    IF vector_version IS NULL THEN
        RAISE EXCEPTION 'the vector extension is not installed: run the migrations first';
    END IF;
    IF vector_version < ARRAY[0, 8] THEN
        RAISE EXCEPTION USING MESSAGE = 'pgvector ' || array_to_string(vector_version, '.')
            || ' is installed; search needs 0.8 or newer (choose a newer database_version)';
    END IF;

    FOREACH function_user IN ARRAY string_to_array(
        nullif(current_setting('lectern.function_users', true), ''), ','
    ) LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = function_user) THEN
            RAISE EXCEPTION USING MESSAGE = 'no database user ' || quote_ident(function_user)
                || ': apply the database stage of Terraform first';
        END IF;
        EXECUTE 'GRANT USAGE ON SCHEMA public TO ' || quote_ident(function_user);
        EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO '
            || quote_ident(function_user);
        EXECUTE 'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO '
            || quote_ident(function_user);
        -- Tables and sequences later migrations create (as this same migrator).
        EXECUTE 'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE '
            || 'ON TABLES TO ' || quote_ident(function_user);
        EXECUTE 'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE '
            || 'ON SEQUENCES TO ' || quote_ident(function_user);
        -- Alembic's bookkeeping is the migrator's alone.
        IF to_regclass('public.alembic_version') IS NOT NULL THEN
            EXECUTE 'REVOKE INSERT, UPDATE, DELETE ON public.alembic_version FROM '
                || quote_ident(function_user);
        END IF;
    END LOOP;
END
$grants$;
