# Terraform and provider versions. `terraform init` records the exact provider
# builds in .terraform.lock.hcl; commit that file after the first init.
terraform {
  required_version = ">= 1.9, < 2.0"

  required_providers {
    # 7.x: google_sql_user.database_roles and build_config.service_account on
    # google_cloudfunctions2_function are both needed here.
    google = {
      source  = "hashicorp/google"
      version = "~> 7.20"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 7.20"
    }
  }

  # State lives in a GCS bucket made once by hand (infra/README.md, step 3). The bucket and
  # prefix are given at init: terraform init -backend-config=bucket=... -backend-config=prefix=...
  backend "gcs" {}
}

provider "google" {
  project        = var.project_id
  region         = var.region
  default_labels = var.labels
}

# Only for google_project_service_identity (the Pub/Sub service agent), which
# the GA provider does not have.
provider "google-beta" {
  project        = var.project_id
  region         = var.region
  default_labels = var.labels
}
