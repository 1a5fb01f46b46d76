output "base_url" {
  description = "The one origin of the API (https://DOMAIN): the frontend calls BASE_URL/<function>/..., as with `lectern dev`. null without var.domain."
  value       = local.load_balancer ? "https://${var.domain}" : null
}

output "load_balancer_ip" {
  description = "Address the domain's A record must point at (the managed certificate is issued once it does). null without var.domain."
  value       = local.load_balancer ? google_compute_global_address.lb[0].address : null
}

output "function_urls" {
  description = "run.app URL of every HTTP function, by function name (direct calls; the frontend should use base_url when there is one)."
  value = {
    for name, function in google_cloudfunctions2_function.function :
    name => function.service_config[0].uri if local.functions[name].frontend
  }
}

output "ingest_url" {
  description = "URL of the ingest function (private: only the push subscription's invoker may call it)."
  value       = local.ingest_url
}

output "database_connection_name" {
  description = "CLOUD_SQL_INSTANCE: the instance's connection name (project:region:instance)."
  value       = google_sql_database_instance.main.connection_name
}

output "database_name" {
  description = "DB_NAME: the application database."
  value       = google_sql_database.lectern.name
}

output "migrator_db_user" {
  description = "DB_USER for `lectern migrate`: the deployer service account's IAM database user."
  value       = google_sql_user.migrator.name
}

output "function_db_users" {
  description = "DB_USER of each function: its service account's IAM database user (infra/sql/grants.sql grants them the tables)."
  value       = { for name, user in google_sql_user.function : name => user.name }
}

output "function_service_accounts" {
  description = "Service account email of each function."
  value       = { for name, account in google_service_account.function : name => account.email }
}

output "database_connections_at_peak" {
  description = "Connections all function instances may hold at once: sum of max_instances x concurrency (each pool is the concurrency, no overflow)."
  value       = local.db_connections_at_peak
}

output "materials_bucket" {
  description = "GCS_BUCKET: the materials bucket."
  value       = google_storage_bucket.materials.name
}

output "ingest_topic" {
  description = "Topic the materials bucket announces new objects on."
  value       = google_pubsub_topic.ingest.id
}

output "dead_letter_subscription" {
  description = "Pull subscription holding notifications the ingest function failed dead_letter_max_delivery_attempts times."
  value       = google_pubsub_subscription.ingest_dead_letter.id
}
