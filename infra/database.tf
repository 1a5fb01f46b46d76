# Cloud SQL for PostgreSQL with pgvector, reached only through the Cloud SQL
# connectors (cloud-sql-python-connector in the functions and in
# `lectern migrate`), with IAM database authentication: no passwords anywhere.
#
# Database users:
#   - the deployer service account (var.deployer_service_account) is the
#     migrator: in cloudsqlsuperuser, it creates the vector extension and owns
#     every table. Cloud Build already runs as it, so `lectern migrate` logs in
#     with the build's own credentials.
#   - each function's service account is a user with no role of its own:
#     infra/sql/grants.sql, which the pipeline runs as the migrator after every
#     migration, grants it SELECT/INSERT/UPDATE/DELETE on the tables (and
#     default privileges for tables later migrations add). Functions cannot
#     change the schema.

resource "google_sql_database_instance" "main" {
  #checkov:skip=CKV_GCP_60:The public IP has no authorized networks and connector_enforcement = REQUIRED, so only IAM-authorized Cloud SQL connectors reach it; private IP needs a VPC, Private Service Access and a VPC connector per function (docs/scaling.md says when).
  #checkov:skip=CKV_GCP_79:POSTGRES_17 is the default the pgvector >= 0.8 check (infra/sql/grants.sql) was written against; POSTGRES_18 is accepted by var.database_version.
  #checkov:skip=CKV_GCP_108:log_hostname does a reverse DNS lookup per connection, and every client is a Cloud SQL connector whose address says nothing; the IAM user name in log_connections identifies the function.
  #checkov:skip=CKV_GCP_110:pgAudit would log every statement of every function; log_statement = ddl records schema changes and Cloud Audit Logs record administration.
  #checkov:skip=CKV2_GCP_13:log_duration logs every statement; Query Insights (insights_config) keeps per-query latency without that volume.
  name                = "${var.name_prefix}-db"
  region              = var.region
  database_version    = var.database_version
  deletion_protection = var.deletion_protection

  settings {
    tier                        = var.db_tier
    edition                     = var.db_edition
    availability_type           = var.db_availability_type
    disk_size                   = var.db_disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection
    # Only the Cloud SQL connectors (Auth Proxy, language connectors) may connect.
    connector_enforcement = "REQUIRED"
    user_labels           = var.labels

    ip_configuration {
      # Public IP without authorized networks: reachable only through the
      # connectors, which need an IAM-authorized ephemeral certificate.
      ipv4_enabled = true
      ssl_mode     = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    }

    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }

    database_flags {
      # Sized against the function pools: see local.db_connections_at_peak (functions.tf).
      name  = "max_connections"
      value = tostring(var.db_max_connections)
    }

    # Logging, as the CIS benchmark asks where it costs little: pooled
    # connections make log_connections cheap; log_statement = ddl records
    # schema changes (migrations) only; errors are logged with their statement.
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }

    database_flags {
      name  = "log_connections"
      value = "on"
    }

    database_flags {
      name  = "log_disconnections"
      value = "on"
    }

    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }

    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }

    database_flags {
      name  = "log_statement"
      value = "ddl"
    }

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      start_time                     = "02:00"

      backup_retention_settings {
        retained_backups = 14
      }
    }

    maintenance_window {
      day          = 7
      hour         = 3
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled = true
    }
  }

  depends_on = [google_project_service.required]
}

resource "google_sql_database" "lectern" {
  name     = var.db_name
  instance = google_sql_database_instance.main.name
  # With deletion protection on, removing the resource leaves the data in place.
  deletion_policy = var.deletion_protection ? "ABANDON" : "DELETE"
}

# The migrator: `lectern migrate` runs as the deployer service account.
resource "google_sql_user" "migrator" {
  name           = trimsuffix(var.deployer_service_account, ".gserviceaccount.com")
  instance       = google_sql_database_instance.main.name
  type           = "CLOUD_IAM_SERVICE_ACCOUNT"
  database_roles = ["cloudsqlsuperuser"]
  # PostgreSQL refuses to drop a role that owns objects.
  deletion_policy = "ABANDON"
}

# One IAM database user per function service account. They exist before the
# first migration (the pipeline's first, targeted apply makes them), so
# grants.sql can grant them the tables.
resource "google_sql_user" "function" {
  for_each = { for name, function in local.functions : name => function if contains(function.needs, "DATABASE") }

  name     = local.db_users[each.key]
  instance = google_sql_database_instance.main.name
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
  # PostgreSQL refuses to drop a role that holds grants.
  deletion_policy = "ABANDON"
}
