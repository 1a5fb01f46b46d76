# Secrets the functions read through secret_environment_variables. The
# operator creates the secret and its first version before the first deploy
# (infra/README.md), so the value never enters the Terraform state and the
# functions can start on their first deploy; Terraform adopts the secret and
# manages its settings and access from then on.
#   printf '%s' "$GEMINI_API_KEY" | gcloud secrets create lectern-gemini-api-key --data-file=-

import {
  to = google_secret_manager_secret.gemini_api_key
  id = "projects/${var.project_id}/secrets/${var.name_prefix}-gemini-api-key"
}

resource "google_secret_manager_secret" "gemini_api_key" {
  secret_id = "${var.name_prefix}-gemini-api-key"

  replication {
    auto {}
  }

  depends_on = [google_project_service.required]
}

locals {
  # Keys used by local.secret_env_by_need (functions.tf).
  secrets = {
    gemini_api_key = google_secret_manager_secret.gemini_api_key
  }
  secret_versions = {
    gemini_api_key = var.gemini_api_key_version
  }
}
