# Service accounts and every IAM grant. Each function runs as its own service
# account holding only what its code uses (infra/README.md has the table). Grants go
# on the narrowest resource that carries them: the bucket, the secret, the
# topic, the subscription, the Cloud Run service, the service account itself.
# Only the Cloud SQL connection roles are project-level (Cloud SQL has no
# per-instance IAM). Nothing here grants roles/owner or roles/editor, and no
# project-level grant gives roles/iam.serviceAccountTokenCreator.

# Google-managed service agents.
data "google_storage_project_service_account" "storage" {}

# The project number names Cloud Functions' source bucket (gcf-v2-sources-NUMBER-REGION).
data "google_project" "this" {
  project_id = var.project_id
}

resource "google_project_service_identity" "pubsub" {
  provider = google-beta
  service  = "pubsub.googleapis.com"

  depends_on = [google_project_service.required]
}

locals {
  storage_agent = "serviceAccount:${data.google_storage_project_service_account.storage.email_address}"
  pubsub_agent  = google_project_service_identity.pubsub.member

  # What a principal needs to log in to Cloud SQL as an IAM database user.
  cloudsql_login_roles = ["roles/cloudsql.client", "roles/cloudsql.instanceUser"]

  function_cloudsql_roles = {
    for pair in setproduct(
      [for name, function in local.functions : name if contains(function.needs, "DATABASE")],
      local.cloudsql_login_roles,
    ) : "${pair[0]} ${pair[1]}" => { function = pair[0], role = pair[1] }
  }

  # (function, secret) pairs, from the secret settings each function reads.
  function_secrets = merge(concat([{}], [
    for name, secret_env in local.function_secret_env : {
      for secret in distinct(values(secret_env)) : "${name} ${secret}" => { function = name, secret = secret }
    }
  ])...)

  # The build service account of a gen2 function, as the Cloud Run functions
  # documentation lists it ("Configure the build service account"): Logs
  # Writer, Artifact Registry Writer (the gcf-artifacts repository Google
  # creates) and Storage Object Admin for the function source. Cloud Functions
  # copies our zip into its own gcf-v2-sources-<project number>-<region> bucket
  # and the build reads it from there, so that bucket needs the grant too; it
  # is created by Cloud Functions on the first deploy, so the grant is at
  # project level with a condition naming that bucket (and ours) only: the
  # builder gets nothing on the materials bucket.
  builder_project_roles = ["roles/logging.logWriter", "roles/artifactregistry.writer"]
  builder_source_buckets = [
    "projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-${var.region}",
    "projects/_/buckets/${google_storage_bucket.sources.name}",
  ]
}

# -- The functions ------------------------------------------------------------

resource "google_service_account" "function" {
  for_each = local.functions

  account_id   = "${var.name_prefix}-${each.key}"
  display_name = "Lectern ${each.key} function"
  description  = "Runs the ${each.key} Cloud Function; holds only the roles its code needs."

  depends_on = [google_project_service.required]
}

resource "google_project_iam_member" "function_cloudsql" {
  for_each = local.function_cloudsql_roles

  project = var.project_id
  role    = each.value.role
  member  = google_service_account.function[each.value.function].member
}

resource "google_storage_bucket_iam_member" "function_materials" {
  for_each = { for name, function in local.functions : name => function if function.bucket_role != null }

  bucket = google_storage_bucket.materials.name
  role   = each.value.bucket_role
  member = google_service_account.function[each.key].member
}

# V4 signed URLs are signed by the IAM signBlob API as the function's own
# account (Cloud Functions hold no private key): token creator on itself only.
resource "google_service_account_iam_member" "function_signs_as_itself" {
  for_each = { for name, function in local.functions : name => function if function.signs_urls }

  service_account_id = google_service_account.function[each.key].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = google_service_account.function[each.key].member
}

resource "google_secret_manager_secret_iam_member" "function_reads_secret" {
  for_each = local.function_secrets

  secret_id = local.secrets[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function[each.value.function].member
}

# The browser calls the HTTP functions with an Auth0 token, which Cloud Run
# cannot check; the functions verify it themselves.
resource "google_cloud_run_v2_service_iam_member" "public_invoker" {
  for_each = var.allow_unauthenticated_http ? { for name, function in local.deployed : name => function if function.frontend } : {}

  project  = var.project_id
  location = var.region
  # A gen2 function runs as the Cloud Run service of the same name.
  name   = google_cloudfunctions2_function.function[each.key].name
  role   = "roles/run.invoker"
  member = "allUsers"
}

# -- Building the functions ---------------------------------------------------

resource "google_service_account" "builder" {
  account_id   = "${var.name_prefix}-builder"
  display_name = "Lectern function builder"
  description  = "Cloud Build runs the Cloud Functions builds as this account."

  depends_on = [google_project_service.required]
}

resource "google_project_iam_member" "builder" {
  for_each = toset(local.builder_project_roles)

  project = var.project_id
  role    = each.value
  member  = google_service_account.builder.member
}

resource "google_project_iam_member" "builder_function_sources" {
  project = var.project_id
  role    = "roles/storage.objectAdmin"
  member  = google_service_account.builder.member

  condition {
    title       = "function sources only"
    description = "The buckets holding function sources: ours and Cloud Functions' gcf-v2-sources bucket of this region."
    expression = join(" || ", [
      for bucket in local.builder_source_buckets :
      "resource.name == \"${bucket}\" || resource.name.startsWith(\"${bucket}/\")"
    ])
  }
}

# -- Migrations ---------------------------------------------------------------

# The deployer logs in to the database as the migrator (database.tf).
resource "google_project_iam_member" "deployer_cloudsql" {
  for_each = toset(local.cloudsql_login_roles)

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${var.deployer_service_account}"
}

# -- Ingestion ----------------------------------------------------------------

# Pub/Sub pushes to the ingest function with an OIDC token of this account,
# which may invoke that one Cloud Run service and nothing else.
resource "google_service_account" "ingest_invoker" {
  account_id   = "${var.name_prefix}-ingest-invoker"
  display_name = "Lectern ingest push invoker"
  description  = "Identity of the Pub/Sub push to the ingest function."

  depends_on = [google_project_service.required]
}

resource "google_cloud_run_v2_service_iam_member" "ingest_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.function["ingest"].name
  role     = "roles/run.invoker"
  member   = google_service_account.ingest_invoker.member
}

# The Pub/Sub service agent mints the push's OIDC tokens as the invoker account.
resource "google_service_account_iam_member" "pubsub_signs_invoker_tokens" {
  service_account_id = google_service_account.ingest_invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# Cloud Storage's service agent publishes the bucket's notifications.
resource "google_pubsub_topic_iam_member" "storage_publishes_ingest" {
  topic  = google_pubsub_topic.ingest.id
  role   = "roles/pubsub.publisher"
  member = local.storage_agent
}

# moderate publishes a re-ingest notice (an OBJECT_FINALIZE notification of the
# material's current object) to the same topic: POST /moderate/materials/{id}/reingest.
resource "google_pubsub_topic_iam_member" "moderate_publishes_reingest" {
  topic  = google_pubsub_topic.ingest.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.function["moderate"].member
}

# Dead-lettering: the Pub/Sub service agent forwards to the dead-letter topic
# and acknowledges the original on the subscription.
resource "google_pubsub_topic_iam_member" "pubsub_publishes_dead_letters" {
  topic  = google_pubsub_topic.ingest_dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "pubsub_acks_dead_letters" {
  subscription = google_pubsub_subscription.ingest_push.id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}
