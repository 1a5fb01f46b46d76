# -- Project -------------------------------------------------------------------

variable "project_id" {
  type        = string
  description = "ID of the Google Cloud project everything is deployed into."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project ID (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "region" {
  type        = string
  description = "Region of the functions, the Cloud SQL instance and the buckets, e.g. europe-west1."
  default     = "europe-west1"

  validation {
    # Every region name is <area>-<direction><number>: us-central1, europe-west10,
    # me-central2, northamerica-northeast2, africa-south1.
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]{1,2}$", var.region))
    error_message = "region must be a Google Cloud region such as europe-west1 (not a zone or multi-region)."
  }
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name (functions, service accounts, topics, buckets, the instance)."
  default     = "lectern"

  validation {
    # The bound is the longest name built from the prefix against its limit:
    # service account IDs are at most 30 characters, and "<prefix>-ingest-invoker"
    # adds 15. tests/test_infra.py derives it from every name in infra/ and
    # builds them all at this length.
    condition     = can(regex("^[a-z][a-z0-9-]{1,13}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-15 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every resource that takes labels."
  default     = { app = "lectern" }
}

variable "deployer_service_account" {
  type        = string
  description = "Email of the service account Cloud Build runs this Terraform and `lectern migrate` as. It becomes the migrator: an IAM database user in cloudsqlsuperuser that owns the schema."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9-]+\\.iam\\.gserviceaccount\\.com$", var.deployer_service_account))
    error_message = "deployer_service_account must be a user-managed service account email (NAME@PROJECT.iam.gserviceaccount.com)."
  }

  validation {
    # Its IAM database user is the email without .gserviceaccount.com, and a
    # PostgreSQL role name is at most 63 bytes.
    condition     = length(trimsuffix(var.deployer_service_account, ".gserviceaccount.com")) <= 63
    error_message = "deployer_service_account without .gserviceaccount.com must be at most 63 characters (its PostgreSQL user name)."
  }
}

# -- HTTP functions -----------------------------------------------------------

variable "frontend_origins" {
  type        = list(string)
  description = "Origins of the frontend (scheme://host[:port], no path): CORS_ORIGINS of the HTTP functions and the CORS rule of the materials bucket."
  default     = []

  validation {
    condition     = alltrue([for origin in var.frontend_origins : can(regex("^https?://[^/\\s]+$", origin))])
    error_message = "Each frontend origin must look like https://app.example.com (scheme and host, no trailing slash or path)."
  }
}

variable "allow_unauthenticated_http" {
  type        = bool
  description = "Let anyone reach the HTTP functions (roles/run.invoker for allUsers). They check an Auth0 bearer token themselves; set false only if something in front of them (API Gateway, a load balancer with IAP) calls them with a Google identity."
  default     = true
}

variable "auth_issuer" {
  type        = string
  description = "AUTH_ISSUER: the Auth0 tenant's issuer URL, e.g. https://lectern.eu.auth0.com/ (trailing slash included, as in the tokens' iss claim)."

  validation {
    condition     = can(regex("^https://[^/\\s]+/?.*$", var.auth_issuer))
    error_message = "auth_issuer must be an https URL."
  }
}

variable "auth_audience" {
  type        = string
  description = "AUTH_AUDIENCE: the Auth0 API identifier the tokens are issued for (their aud claim)."

  validation {
    condition     = length(trimspace(var.auth_audience)) > 0
    error_message = "auth_audience must not be empty."
  }
}

variable "auth_jwks_url" {
  type        = string
  description = "AUTH_JWKS_URL: where the issuer publishes its signing keys, e.g. https://lectern.eu.auth0.com/.well-known/jwks.json."

  validation {
    condition     = can(regex("^https://[^/\\s]+/.*$", var.auth_jwks_url))
    error_message = "auth_jwks_url must be an https URL."
  }
}

variable "max_upload_mb" {
  type        = number
  description = "MAX_UPLOAD_MB of the submit function: the largest PDF a student may upload."
  default     = 25

  validation {
    condition     = var.max_upload_mb >= 1 && var.max_upload_mb <= 30 && floor(var.max_upload_mb) == var.max_upload_mb
    error_message = "max_upload_mb must be a whole number from 1 to 30 (Cloud Functions refuse request bodies over 32 MiB)."
  }
}

variable "log_level" {
  type        = string
  description = "LOG_LEVEL of every function."
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be one of DEBUG, INFO, WARNING, ERROR."
  }
}

# -- One origin (loadbalancer.tf) --------------------------------------------

variable "domain" {
  type        = string
  description = "Host name of the API behind the HTTPS load balancer, e.g. api.lectern.example: https://DOMAIN/<function>/... reaches each HTTP function, with a Google-managed certificate. null (the default) makes no load balancer."
  default     = null

  validation {
    condition     = var.domain == null || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", coalesce(var.domain, "x.y")))
    error_message = "domain must be a lowercase host name such as api.lectern.example (no scheme, port or path)."
  }
}

variable "rate_limit_per_minute" {
  type        = number
  description = "Cloud Armor on the load balancer: requests per minute one client IP may send to each function in rate_limited_functions before getting 429. 0 (the default) turns Cloud Armor off. Needs domain."
  default     = 0

  validation {
    condition     = var.rate_limit_per_minute >= 0 && floor(var.rate_limit_per_minute) == var.rate_limit_per_minute
    error_message = "rate_limit_per_minute must be a whole number, 0 for no limit."
  }
}

variable "rate_limited_functions" {
  type        = list(string)
  description = "Functions the Cloud Armor rate limit applies to (uploads and search by default: the expensive ones)."
  default     = ["submit", "search"]

  validation {
    condition     = alltrue([for name in var.rate_limited_functions : can(regex("^[a-z][a-z0-9_]*$", name))])
    error_message = "rate_limited_functions must be function names (folders of functions/)."
  }
}

# -- Function sizing ----------------------------------------------------------

variable "function_settings" {
  type = map(object({
    memory          = optional(string)
    cpu             = optional(string)
    timeout_seconds = optional(number)
    min_instances   = optional(number)
    max_instances   = optional(number)
    concurrency     = optional(number)
  }))
  description = "Per-function overrides of the sizing defaults in functions.tf (memory, cpu, timeout_seconds, min_instances, max_instances, concurrency), keyed by function name. Unset fields keep their defaults."
  default     = {}

  validation {
    condition = alltrue([
      for name, settings in var.function_settings : alltrue([
        settings.memory == null || can(regex("^[0-9]+(Mi|Gi)$", coalesce(settings.memory, "0Mi"))),
        settings.timeout_seconds == null || (coalesce(settings.timeout_seconds, 1) >= 1 && coalesce(settings.timeout_seconds, 1) <= 3600),
        settings.min_instances == null || coalesce(settings.min_instances, 0) >= 0,
        settings.max_instances == null || coalesce(settings.max_instances, 1) >= 1,
        settings.concurrency == null || (coalesce(settings.concurrency, 1) >= 1 && coalesce(settings.concurrency, 1) <= 1000),
      ])
    ])
    error_message = "function_settings: memory like 512Mi or 1Gi, timeout_seconds 1-3600, min_instances >= 0, max_instances >= 1, concurrency 1-1000."
  }
}

variable "http_ingress_settings" {
  type        = string
  description = "Ingress of the HTTP functions. ALLOW_ALL keeps their run.app URLs reachable from browsers; with the load balancer (var.domain) in use, ALLOW_INTERNAL_AND_GCLB makes it the only way in, so its Cloud Armor policy cannot be bypassed."
  default     = "ALLOW_ALL"

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_AND_GCLB"], var.http_ingress_settings)
    error_message = "http_ingress_settings must be ALLOW_ALL or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "package_dir" {
  type        = string
  description = "Folder (relative to infra/) holding the zips written by scripts/package_functions.py."
  default     = "../build/functions"
}

variable "ingest_ingress_settings" {
  type        = string
  description = "Ingress of the ingest function. Pub/Sub push from this project counts as internal traffic, so ALLOW_INTERNAL_ONLY keeps it off the internet."
  default     = "ALLOW_INTERNAL_ONLY"

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.ingest_ingress_settings)
    error_message = "ingest_ingress_settings must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

# -- Database -----------------------------------------------------------------

variable "database_version" {
  type        = string
  description = "Cloud SQL PostgreSQL major version. Search needs pgvector >= 0.8 (iterative index scans); the deploy pipeline checks the installed version after migrating."
  default     = "POSTGRES_17"

  validation {
    condition     = contains(["POSTGRES_16", "POSTGRES_17", "POSTGRES_18"], var.database_version)
    error_message = "database_version must be POSTGRES_16, POSTGRES_17 or POSTGRES_18."
  }
}

variable "db_tier" {
  type        = string
  description = "Machine type of the Cloud SQL instance (an Enterprise edition tier such as db-custom-1-3840 or db-g1-small)."
  default     = "db-custom-1-3840"
}

variable "db_edition" {
  type        = string
  description = "Cloud SQL edition. ENTERPRISE_PLUS needs a db-perf-optimized-N-* tier."
  default     = "ENTERPRISE"

  validation {
    condition     = contains(["ENTERPRISE", "ENTERPRISE_PLUS"], var.db_edition)
    error_message = "db_edition must be ENTERPRISE or ENTERPRISE_PLUS."
  }
}

variable "db_availability_type" {
  type        = string
  description = "ZONAL (one zone) or REGIONAL (high availability, twice the cost)."
  default     = "ZONAL"

  validation {
    condition     = contains(["ZONAL", "REGIONAL"], var.db_availability_type)
    error_message = "db_availability_type must be ZONAL or REGIONAL."
  }
}

variable "db_disk_size_gb" {
  type        = number
  description = "Initial disk size in GB; the disk grows automatically."
  default     = 10

  validation {
    condition     = var.db_disk_size_gb >= 10
    error_message = "db_disk_size_gb must be at least 10."
  }
}

variable "db_name" {
  type        = string
  description = "Name of the application database (DB_NAME)."
  default     = "lectern"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.db_name))
    error_message = "db_name must be a lowercase PostgreSQL identifier."
  }
}

variable "db_max_connections" {
  type        = number
  description = "The instance's max_connections flag. Must cover every function instance's pool (max_instances x concurrency, summed) plus db_reserved_connections (checked at plan time)."
  default     = 200

  validation {
    condition     = var.db_max_connections >= 25 && var.db_max_connections <= 4000
    error_message = "db_max_connections must be between 25 and 4000."
  }
}

variable "db_reserved_connections" {
  type        = number
  description = "Connections kept free for migrations, operators and Cloud SQL itself when sizing the function pools."
  default     = 10

  validation {
    condition     = var.db_reserved_connections >= 3
    error_message = "db_reserved_connections must be at least 3 (Cloud SQL reserves some for itself)."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the Cloud SQL instance and its database from deletion (by Terraform and in the console). Turn off, apply, then destroy."
  default     = true
}

# -- Materials bucket ---------------------------------------------------------

variable "rejected_retention_days" {
  type        = number
  description = "Days a rejected or taken-down file (rejected/...) is kept before the bucket's lifecycle rule deletes it, counted from the move there. This is also how long undo_reject can bring it back: afterwards the request keeps its row and an undo_reject of it fails with object_missing."
  default     = 30

  validation {
    condition     = var.rejected_retention_days >= 1 && floor(var.rejected_retention_days) == var.rejected_retention_days
    error_message = "rejected_retention_days must be a whole number of days, at least 1."
  }
}

variable "abort_incomplete_uploads_after_days" {
  type        = number
  description = "Days after which unfinished multipart uploads to the materials bucket are aborted."
  default     = 1

  validation {
    condition     = var.abort_incomplete_uploads_after_days >= 1
    error_message = "abort_incomplete_uploads_after_days must be at least 1."
  }
}

# -- Ingestion ----------------------------------------------------------------

variable "dead_letter_max_delivery_attempts" {
  type        = number
  description = "Deliveries of a bucket notification to the ingest function before Pub/Sub moves it to the dead-letter topic."
  default     = 10

  validation {
    condition     = var.dead_letter_max_delivery_attempts >= 5 && var.dead_letter_max_delivery_attempts <= 100
    error_message = "dead_letter_max_delivery_attempts must be between 5 and 100 (Pub/Sub's limits)."
  }
}

variable "ingest_max_attempts" {
  type        = number
  description = "INGEST_MAX_ATTEMPTS: failed attempts at one object generation before the material is marked failed and the notice acknowledged. Keep it below dead_letter_max_delivery_attempts so the material records the failure before Pub/Sub gives up."
  default     = 5

  validation {
    condition     = var.ingest_max_attempts >= 1 && var.ingest_max_attempts <= 50
    error_message = "ingest_max_attempts must be between 1 and 50 (the range shared/config.py accepts)."
  }
}

variable "retry_minimum_backoff_seconds" {
  type        = number
  description = "Shortest wait before Pub/Sub redelivers a notification the ingest function failed."
  default     = 10

  validation {
    condition     = var.retry_minimum_backoff_seconds >= 0 && var.retry_minimum_backoff_seconds <= 600
    error_message = "retry_minimum_backoff_seconds must be between 0 and 600."
  }
}

variable "retry_maximum_backoff_seconds" {
  type        = number
  description = "Longest wait between redeliveries (the backoff grows exponentially up to it)."
  default     = 600

  validation {
    condition     = var.retry_maximum_backoff_seconds >= 0 && var.retry_maximum_backoff_seconds <= 600
    error_message = "retry_maximum_backoff_seconds must be between 0 and 600."
  }
}

# -- Embeddings ---------------------------------------------------------------

variable "embeddings_provider" {
  type        = string
  description = "EMBEDDINGS_PROVIDER of ingest and search: gemini in production, local only for a throwaway environment."
  default     = "gemini"

  validation {
    condition     = contains(["gemini", "local"], var.embeddings_provider)
    error_message = "embeddings_provider must be gemini or local."
  }
}

variable "gemini_api_key_version" {
  type        = string
  description = "Version of the Gemini API key secret the functions read: a number to pin one, or latest. New instances read it at start."
  default     = "latest"

  validation {
    condition     = var.gemini_api_key_version == "latest" || can(regex("^[1-9][0-9]*$", var.gemini_api_key_version))
    error_message = "gemini_api_key_version must be latest or a version number."
  }
}

variable "gemini_embedding_model" {
  type        = string
  description = "GEMINI_EMBEDDING_MODEL. Changing it makes existing chunks unsearchable until they are re-ingested."
  default     = "gemini-embedding-001"
}

variable "gemini_answer_model" {
  type        = string
  description = "GEMINI_ANSWER_MODEL: the model that writes search answers."
  default     = "gemini-2.5-flash"
}
