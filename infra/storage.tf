# The materials bucket (pending/, rejected/ and published objects, see
# docs/architecture.md, Storage), its notifications to the ingestion topic, and the
# bucket the function packages are uploaded to.

resource "google_storage_bucket" "materials" {
  #checkov:skip=CKV_GCP_62:Access is recorded by Cloud Audit Logs (data access logs can be turned on for storage.googleapis.com); a usage-log bucket would be a second bucket to secure and expire.
  #checkov:skip=CKV_GCP_78:No versioning on purpose: deletions here are the product's (withdrawn uploads, the rejected/ retention, the sweep), and noncurrent versions would keep those files alive. Every object is reproducible from its request.
  name                        = "${var.project_id}-${var.name_prefix}-materials"
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  # Browsers fetch published PDFs straight from their signed URLs (PDF.js asks
  # for byte ranges), and PUT direct uploads to the resumable session URLs the
  # submit function creates (POST /submit/uploads; a session made with the
  # browser's Origin also answers that origin; Range tells a resumed upload
  # where to go on).
  dynamic "cors" {
    for_each = length(var.frontend_origins) > 0 ? [var.frontend_origins] : []
    content {
      origin          = cors.value
      method          = ["GET", "HEAD", "PUT"]
      response_header = ["Content-Type", "Content-Length", "Content-Range", "Content-Disposition", "Accept-Ranges", "Range", "X-Goog-Hash"]
      max_age_seconds = 3600
    }
  }

  # A rejected submission (or a taken-down material) is copied to rejected/
  # when it is rejected, so the object's age counts from the rejection. This
  # rule and undo_reject agree: undo_reject moves the file back for
  # var.rejected_retention_days days; after that the object is gone, the
  # request keeps only its row, and POST /moderate/actions reports that
  # undo_reject item as object_missing (shared/moderation.py): the documented
  # outcome, not an error.
  #
  # No rule deletes anything under pending/: every object there belongs to a
  # pending request, which must never lose its file, however long moderation
  # takes. Objects there that no row refers to (a crash between the upload
  # and its transaction) are deleted by the sweep (shared/sweep.py) through
  # their ObjectIntent, which knows what a lifecycle rule cannot: whether a
  # row refers to the name. tests/test_infra.py checks no Delete rule can
  # reach pending/.
  lifecycle_rule {
    condition {
      age            = var.rejected_retention_days
      matches_prefix = ["rejected/"]
    }
    action {
      type = "Delete"
    }
  }

  # Direct uploads (uploads/<upload id>/...) that were never completed. A
  # completed or refused one is deleted by its complete call (or the sweep);
  # an upload expires after UPLOAD_EXPIRY_HOURS (at most 24), so a day-old
  # object can no longer be completed.
  lifecycle_rule {
    condition {
      age            = 1
      matches_prefix = ["uploads/"]
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = var.abort_incomplete_uploads_after_days
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }
}

# Every new object generation (uploads, approvals' copies) is announced on the
# ingestion topic as the object resource (JSON_API_V1). The pipeline skips what
# is not a published material, so no prefix filter is needed (nor possible:
# published objects live under their course's name).
resource "google_storage_notification" "materials_finalized" {
  bucket         = google_storage_bucket.materials.name
  payload_format = "JSON_API_V1"
  topic          = google_pubsub_topic.ingest.id
  event_types    = ["OBJECT_FINALIZE"]

  depends_on = [google_pubsub_topic_iam_member.storage_publishes_ingest]
}

# Function packages (build/functions/<name>.zip), named by content hash.
resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62:Holds only build inputs that are reproducible from git; Cloud Audit Logs cover access.
  #checkov:skip=CKV_GCP_78:Objects are content-addressed zips rebuilt byte-identically from git; versions would add nothing.
  name                        = "${var.project_id}-${var.name_prefix}-sources"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
}
