# The Google APIs the deployment uses, enabled by Terraform. Only the ones the
# pipeline needs before Terraform can run at all (Cloud Build, Service Usage,
# Cloud Resource Manager, IAM) are enabled by hand once (infra/README.md, step 1);
# they are listed here too, so the list is complete.
#
# disable_on_destroy = false: removing an entry (or `terraform destroy`) leaves
# the API on. Turning an API off breaks whatever else in the project uses it.

locals {
  required_services = toset([
    "artifactregistry.googleapis.com",     # the functions' images (Cloud Build writes them)
    "cloudbuild.googleapis.com",           # builds the functions (and runs this pipeline)
    "cloudfunctions.googleapis.com",       # google_cloudfunctions2_function
    "cloudresourcemanager.googleapis.com", # project IAM grants
    "cloudscheduler.googleapis.com",       # the sweep's schedule (sweep.tf)
    "compute.googleapis.com",              # the load balancer (loadbalancer.tf)
    "iam.googleapis.com",                  # service accounts
    "iamcredentials.googleapis.com",       # signBlob: V4 signed download URLs
    "logging.googleapis.com",              # build and function logs
    "pubsub.googleapis.com",               # ingest topic, push subscription, dead letters
    "run.googleapis.com",                  # gen2 functions run as Cloud Run services
    "secretmanager.googleapis.com",        # the Gemini API key
    "serviceusage.googleapis.com",         # this file
    "sqladmin.googleapis.com",             # Cloud SQL and its connectors
    "storage.googleapis.com",              # the buckets
  ])
}

resource "google_project_service" "required" {
  for_each = local.required_services

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# sweep.tf enabled Cloud Scheduler on its own before this list existed.
moved {
  from = google_project_service.cloudscheduler
  to   = google_project_service.required["cloudscheduler.googleapis.com"]
}
