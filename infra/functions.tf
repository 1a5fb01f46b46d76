# One Cloud Function (gen2) per folder of functions/. The entry point is the
# folder name; the source is the zip scripts/package_functions.py wrote.
#
# Every function is HTTP-triggered. ingest is a CloudEvent function in its
# code, but it is deployed without an event_trigger and fed by our own push
# subscription (pubsub.tf), so that the subscription can have a dead-letter
# topic; functions-framework turns the Pub/Sub push body into the
# messagePublished CloudEvent the code expects. infra/README.md explains why.

locals {
  # What each function is. tests/test_infra.py checks this table against the
  # code: every folder of functions/ has an entry, and `needs` covers the
  # shared.config.Needs groups its main.py asks for.
  #   frontend     called by the browser: public HTTPS URL, CORS
  #   needs        settings groups (env_by_need below)
  #   bucket_role  its role on the materials bucket, or null
  #   signs_urls   makes V4 signed URLs (IAM signBlob as itself)
  functions = {
    catalog = {
      frontend    = true
      needs       = ["DATABASE", "AUTH", "STORAGE"]
      bucket_role = "roles/storage.objectViewer" # signed download URLs act as this account
      signs_urls  = true
      sizing      = { memory = "512Mi", cpu = "1", timeout_seconds = 60, max_instances = 8, concurrency = 4 }
    }
    profile = {
      frontend    = true
      needs       = ["DATABASE", "AUTH"]
      bucket_role = null
      signs_urls  = false
      sizing      = { memory = "512Mi", cpu = "1", timeout_seconds = 60, max_instances = 4, concurrency = 4 }
    }
    submit = {
      frontend    = true
      needs       = ["DATABASE", "AUTH", "STORAGE"]
      bucket_role = "roles/storage.objectAdmin" # uploads, and deletes an upload whose row failed
      signs_urls  = false
      # 180 s: a direct upload's complete streams up to MAX_UPLOAD_MB back (60 s budget).
      sizing = { memory = "1Gi", cpu = "1", timeout_seconds = 180, max_instances = 4, concurrency = 4 }
    }
    moderate = {
      frontend    = true
      needs       = ["DATABASE", "AUTH", "STORAGE"]
      bucket_role = "roles/storage.objectAdmin" # copies and deletes on every transition
      signs_urls  = true                        # admins download pending files
      sizing      = { memory = "512Mi", cpu = "1", timeout_seconds = 120, max_instances = 2, concurrency = 4 }
    }
    heartbeat = {
      frontend    = true
      needs       = ["DATABASE", "AUTH"]
      bucket_role = null
      signs_urls  = false
      sizing      = { memory = "512Mi", cpu = "1", timeout_seconds = 60, max_instances = 8, concurrency = 4 }
    }
    tasks = {
      frontend    = true
      needs       = ["DATABASE", "AUTH"]
      bucket_role = null
      signs_urls  = false
      sizing      = { memory = "512Mi", cpu = "1", timeout_seconds = 60, max_instances = 4, concurrency = 4 }
    }
    search = {
      frontend    = true
      needs       = ["DATABASE", "AUTH", "EMBEDDINGS"]
      bucket_role = null
      signs_urls  = false
      sizing      = { memory = "1Gi", cpu = "1", timeout_seconds = 120, max_instances = 4, concurrency = 4 }
    }
    ingest = {
      frontend    = false
      needs       = ["DATABASE", "STORAGE", "EMBEDDINGS"]
      bucket_role = "roles/storage.objectViewer" # reads the finalized object
      signs_urls  = false
      # One PDF at a time per instance; the timeout is also the push ack deadline (<= 600 s).
      sizing = { memory = "2Gi", cpu = "1", timeout_seconds = 540, max_instances = 3, concurrency = 1 }
    }
    sweep = {
      frontend    = false
      needs       = ["DATABASE", "STORAGE", "EMBEDDINGS"]
      bucket_role = "roles/storage.objectAdmin" # deletes abandoned objects (shared/sweep.py)
      signs_urls  = false
      # Called by Cloud Scheduler (sweep.tf); one run at a time, re-driven ingestions included.
      sizing = { memory = "2Gi", cpu = "1", timeout_seconds = 540, max_instances = 1, concurrency = 1 }
    }
  }

  # Folders of functions/ that exist in this checkout. A configured function
  # whose folder does not exist yet is not deployed; a folder without an entry
  # above fails the plan (precondition below).
  function_folders = toset([for main in fileset("${path.module}/../functions", "*/main.py") : dirname(main)])
  deployed         = { for name, function in local.functions : name => function if contains(local.function_folders, name) }

  # Sizing: the defaults above, overridden field by field by var.function_settings.
  sizing_overrides = {
    for name, settings in var.function_settings : name => { for field, value in settings : field => value if value != null }
  }
  sizing = {
    for name, function in local.functions : name => merge(
      { min_instances = 0 },
      function.sizing,
      try(local.sizing_overrides[name], {}),
    )
  }

  # The IAM database user of a service account is its email without ".gserviceaccount.com".
  db_users = { for name, account in google_service_account.function : name => trimsuffix(account.email, ".gserviceaccount.com") }

  # The settings of each shared.config.Needs group, as environment variables.
  # DB_USER is per function (its own IAM user) and is added in function_env.
  env_by_need = {
    DATABASE = {
      CLOUD_SQL_INSTANCE = google_sql_database_instance.main.connection_name
      DB_NAME            = google_sql_database.lectern.name
      DB_IAM_AUTH        = "true"
    }
    AUTH = {
      AUTH_ISSUER   = var.auth_issuer
      AUTH_AUDIENCE = var.auth_audience
      AUTH_JWKS_URL = var.auth_jwks_url
    }
    STORAGE = {
      GCS_BUCKET = google_storage_bucket.materials.name
    }
    EMBEDDINGS = {
      EMBEDDINGS_PROVIDER    = var.embeddings_provider
      GEMINI_EMBEDDING_MODEL = var.gemini_embedding_model
      GEMINI_ANSWER_MODEL    = var.gemini_answer_model
    }
  }

  # Settings read from Secret Manager: environment variable => key of local.secrets (secrets.tf).
  secret_env_by_need = {
    EMBEDDINGS = { GEMINI_API_KEY = "gemini_api_key" }
  }

  # Settings only one function reads.
  extra_env = {
    submit = { MAX_UPLOAD_MB = tostring(var.max_upload_mb) }
    # A large book's chunk set is written in a few long multi-row INSERTs (HNSW upkeep).
    ingest = { INGEST_MAX_ATTEMPTS = tostring(var.ingest_max_attempts), DB_STATEMENT_TIMEOUT_MS = "120000" }
    sweep  = { DB_STATEMENT_TIMEOUT_MS = "120000" }
    # Where re-ingest notices are published (projects/P/topics/T).
    moderate = { INGEST_TOPIC = google_pubsub_topic.ingest.id }
    # Two Gemini calls (query embedding, answer) of 3 x 10 s + 3 s backoff fit in 120 s.
    search = { GEMINI_TIMEOUT_S = "10", GEMINI_RETRY_ATTEMPTS = "3" }
  }

  function_env = {
    for name, function in local.functions : name => merge(concat(
      [{ LOG_LEVEL = var.log_level }],
      [for need in function.needs : local.env_by_need[need]],
      contains(function.needs, "DATABASE") ? [{
        DB_USER = local.db_users[name]
        # One connection per request the instance serves at once, no overflow.
        DB_POOL_SIZE    = tostring(local.sizing[name].concurrency)
        DB_MAX_OVERFLOW = "0"
      }] : [],
      function.frontend ? [{ CORS_ORIGINS = join(",", var.frontend_origins) }] : [],
      [try(local.extra_env[name], {})],
    )...)
  }

  function_secret_env = {
    for name, function in local.functions : name => merge(
      {}, [for need in function.needs : try(local.secret_env_by_need[need], {})]...
    )
  }

  package_zips = { for name in keys(local.deployed) : name => "${path.module}/${var.package_dir}/${name}.zip" }

  # Connection budget: each instance of a database function holds a pool of
  # DB_POOL_SIZE = its concurrency and no overflow, so at peak
  # sum(max_instances x concurrency) + db_reserved_connections <= db_max_connections.
  # With the defaults: catalog 8x4 + profile 4x4 + submit 4x4 + moderate 2x4
  # + heartbeat 8x4 + tasks 4x4 + search 4x4 + ingest 3x1 + sweep 1x1
  # = 140, plus 10 reserved = 150 <= 200 (docs/scaling.md, "Connection budget").
  db_connections = {
    for name, function in local.functions : name => local.sizing[name].max_instances * local.sizing[name].concurrency
    if contains(function.needs, "DATABASE")
  }
  db_connections_at_peak = sum(concat([0], values(local.db_connections)))
}

resource "google_storage_bucket_object" "source" {
  for_each = local.deployed

  bucket = google_storage_bucket.sources.name
  # A changed package is a new object name, which makes Terraform redeploy the function;
  # an unchanged one (the zips are reproducible) changes nothing.
  name   = "${each.key}/${filesha256(local.package_zips[each.key])}.zip"
  source = local.package_zips[each.key]
}

resource "google_cloudfunctions2_function" "function" {
  #checkov:skip=CKV_GCP_124:HTTP functions default to ALLOW_ALL so their run.app URLs work without a domain; var.http_ingress_settings = ALLOW_INTERNAL_AND_GCLB restricts them to the load balancer. ingest and sweep are internal-only (var.ingest_ingress_settings).
  for_each = local.deployed

  name        = "${var.name_prefix}-${each.key}"
  location    = var.region
  description = "Lectern ${each.key} (functions/${each.key}/main.py)"
  labels      = { function = each.key }

  build_config {
    runtime         = "python312"
    entry_point     = each.key
    service_account = google_service_account.builder.id

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.source[each.key].name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.function[each.key].email
    available_memory                 = local.sizing[each.key].memory
    available_cpu                    = local.sizing[each.key].cpu
    timeout_seconds                  = local.sizing[each.key].timeout_seconds
    min_instance_count               = local.sizing[each.key].min_instances
    max_instance_count               = local.sizing[each.key].max_instances
    max_instance_request_concurrency = local.sizing[each.key].concurrency
    ingress_settings                 = each.value.frontend ? var.http_ingress_settings : var.ingest_ingress_settings
    all_traffic_on_latest_revision   = true
    environment_variables            = local.function_env[each.key]

    dynamic "secret_environment_variables" {
      for_each = local.function_secret_env[each.key]
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = local.secrets[secret_environment_variables.value].secret_id
        version    = local.secret_versions[secret_environment_variables.value]
      }
    }
  }

  # A revision must be able to log in to the database and read its secrets the
  # moment it starts (Cloud Run checks secret access when it deploys).
  depends_on = [
    google_sql_user.function,
    google_project_iam_member.function_cloudsql,
    google_secret_manager_secret_iam_member.function_reads_secret,
    google_storage_bucket_iam_member.function_materials,
    google_project_iam_member.builder_function_sources,
    google_project_iam_member.builder,
    google_project_service.required,
  ]

  lifecycle {
    precondition {
      condition     = length(setsubtract(local.function_folders, keys(local.functions))) == 0
      error_message = "functions/ has folders with no entry in local.functions (infra/functions.tf): ${join(", ", setsubtract(local.function_folders, keys(local.functions)))}. Add one (needs, bucket role, sizing)."
    }
    precondition {
      condition     = length(setsubtract(keys(var.function_settings), keys(local.functions))) == 0
      error_message = "function_settings names unknown functions: ${join(", ", setsubtract(keys(var.function_settings), keys(local.functions)))}."
    }
    precondition {
      condition     = local.db_connections_at_peak + var.db_reserved_connections <= var.db_max_connections
      error_message = "Database connections at peak (sum of max_instances x concurrency = ${local.db_connections_at_peak}) plus db_reserved_connections (${var.db_reserved_connections}) exceed db_max_connections (${var.db_max_connections}). Lower max_instances or concurrency, raise db_max_connections (and the tier), or put the managed connection pooler in front (docs/scaling.md)."
    }
    precondition {
      condition     = var.http_ingress_settings == "ALLOW_ALL" || var.domain != null
      error_message = "http_ingress_settings = ALLOW_INTERNAL_AND_GCLB needs the load balancer: set domain, or the HTTP functions are unreachable."
    }
    precondition {
      # Cloud Run serves more than one request per instance only with a whole CPU.
      condition     = local.sizing[each.key].concurrency == 1 || try(tonumber(local.sizing[each.key].cpu) >= 1, false)
      error_message = "${each.key}: concurrency above 1 needs cpu of at least 1."
    }
    precondition {
      # The pool is the concurrency; shared/config.py accepts DB_POOL_SIZE 1-20.
      condition     = !contains(each.value.needs, "DATABASE") || local.sizing[each.key].concurrency <= 20
      error_message = "${each.key}: concurrency (${local.sizing[each.key].concurrency}) is its database pool size, at most 20."
    }
  }
}
