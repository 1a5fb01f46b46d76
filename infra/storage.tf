# The materials bucket (pending/, rejected/ and published objects, see the
# README's Storage section), its notifications to the ingestion topic, and the
# bucket the function packages are uploaded to.

resource "google_storage_bucket" "materials" {
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

  # A rejected submission is copied to rejected/ when it is rejected, so the
  # object's age counts from the rejection. An undo_reject within the period
  # moves it back; after it, the object is gone and the request keeps only
  # its row (the contract's "meant to expire through a lifecycle rule").
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
  name                        = "${var.project_id}-${var.name_prefix}-sources"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
}
