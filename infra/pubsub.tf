# Ingestion: bucket notification -> ingest topic -> push subscription -> the
# ingest function, with a dead-letter topic for notifications that keep failing.
#
# The subscription is ours, not the one Cloud Functions would create for an
# event_trigger: that one is managed by Eventarc, and Terraform cannot give it
# a dead-letter policy (hashicorp/terraform-provider-google#25069, #17697).

locals {
  ingest_url = google_cloudfunctions2_function.function["ingest"].service_config[0].uri
  # Pub/Sub waits this long for the push request to answer; it must cover a whole run.
  ingest_ack_deadline_seconds = local.sizing["ingest"].timeout_seconds
}

resource "google_pubsub_topic" "ingest" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; the notices carry object names, not content, and a CMEK key would add a KMS key ring to run and rotate.
  name = "${var.name_prefix}-ingest"

  depends_on = [google_project_service.required]
}

resource "google_pubsub_topic" "ingest_dead_letter" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption, as the ingest topic it receives from.
  name = "${var.name_prefix}-ingest-dead-letter"

  depends_on = [google_project_service.required]
}

resource "google_pubsub_subscription" "ingest_push" {
  name  = "${var.name_prefix}-ingest-push"
  topic = google_pubsub_topic.ingest.id

  ack_deadline_seconds       = local.ingest_ack_deadline_seconds
  message_retention_duration = "604800s" # 7 days
  retain_acked_messages      = false

  # Never expire, however long the bucket stays quiet.
  expiration_policy {
    ttl = ""
  }

  push_config {
    # The topic in the path becomes the CloudEvent's source
    # (//pubsub.googleapis.com/projects/P/topics/T) when functions-framework
    # converts the push body. The body keeps Pub/Sub's wrapper
    # ({"message": ..., "subscription": ...}): no_wrapper must stay unset, or
    # functions-framework cannot recognise it.
    push_endpoint = "${local.ingest_url}/${google_pubsub_topic.ingest.id}"

    oidc_token {
      service_account_email = google_service_account.ingest_invoker.email
      audience              = local.ingest_url
    }
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.ingest_dead_letter.id
    max_delivery_attempts = var.dead_letter_max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = "${var.retry_minimum_backoff_seconds}s"
    maximum_backoff = "${var.retry_maximum_backoff_seconds}s"
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.ingest_invoker,
    google_service_account_iam_member.pubsub_signs_invoker_tokens,
    google_pubsub_topic_iam_member.pubsub_publishes_dead_letters,
  ]

  lifecycle {
    precondition {
      condition     = local.ingest_ack_deadline_seconds >= 10 && local.ingest_ack_deadline_seconds <= 600
      error_message = "The ingest timeout (${local.ingest_ack_deadline_seconds} s) is the push ack deadline, which Pub/Sub limits to 10-600 s."
    }
  }
}

# Without a subscription, messages published to the dead-letter topic would be
# dropped. Read them with:
#   gcloud pubsub subscriptions pull lectern-ingest-dead-letter --limit=10
resource "google_pubsub_subscription" "ingest_dead_letter" {
  name  = "${var.name_prefix}-ingest-dead-letter"
  topic = google_pubsub_topic.ingest_dead_letter.id

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }
}

# The pipeline counts attempts per object generation and marks the material
# failed after INGEST_MAX_ATTEMPTS; Pub/Sub should not give up first.
check "ingest_attempts_before_dead_letter" {
  assert {
    condition     = var.ingest_max_attempts < var.dead_letter_max_delivery_attempts
    error_message = "ingest_max_attempts (${var.ingest_max_attempts}) should be below dead_letter_max_delivery_attempts (${var.dead_letter_max_delivery_attempts}), so a failing material is marked failed before its notification is dead-lettered."
  }
}
