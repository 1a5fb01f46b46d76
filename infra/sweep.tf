# The sweep (functions/sweep, shared/sweep.py): every 10 minutes Cloud Scheduler
# posts a CloudEvent (binary mode) to the sweep function, which deletes objects
# that a crash left without a row and re-drives stuck ingestions. The call
# carries an OIDC token of the invoker account, which may invoke only the
# ingest and sweep services.

resource "google_cloud_run_v2_service_iam_member" "sweep_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.function["sweep"].name
  role     = "roles/run.invoker"
  member   = google_service_account.ingest_invoker.member
}

resource "google_cloud_scheduler_job" "sweep" {
  name             = "${var.name_prefix}-sweep"
  region           = var.region
  schedule         = "*/10 * * * *"
  time_zone        = "Etc/UTC"
  attempt_deadline = "${local.sizing["sweep"].timeout_seconds}s"

  retry_config {
    retry_count = 0 # the next tick is the retry
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.function["sweep"].service_config[0].uri
    headers = {
      "Content-Type"   = "application/json"
      "ce-specversion" = "1.0"
      "ce-type"        = "dev.lectern.sweep.tick"
      "ce-source"      = "//cloudscheduler.googleapis.com/${var.name_prefix}-sweep"
      "ce-id"          = "scheduled-sweep"
    }
    body = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.ingest_invoker.email
      audience              = google_cloudfunctions2_function.function["sweep"].service_config[0].uri
    }
  }

  depends_on = [google_project_service.required, google_cloud_run_v2_service_iam_member.sweep_invoker]
}
