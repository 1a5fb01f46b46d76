# One origin for the browser: an external Application Load Balancer at
# https://<var.domain>/ that routes /<function>/... to each HTTP function
# through a serverless NEG, as `lectern dev` serves them on one host. The
# functions strip their own /<function> prefix (shared/http.py, Router), so
# their run.app URLs keep working without it: the push subscription and the
# scheduler call ingest and sweep directly, and neither is behind the balancer.
#
# Made only when var.domain is set. After the first apply, point the domain's
# A record at `terraform output load_balancer_ip`; the managed certificate
# becomes ACTIVE once Google sees it (up to an hour), and HTTPS works from then.
# Port 80 only redirects to HTTPS.

locals {
  load_balancer = var.domain != null
  # The HTTP functions this checkout deploys: the browser's routes.
  balanced = local.load_balancer ? { for name, function in local.deployed : name => function if function.frontend } : {}
  # Cloud Armor: on when a rate is set; throttles only the functions named.
  armor          = local.load_balancer && var.rate_limit_per_minute > 0
  rate_limited   = local.armor ? toset([for name in var.rate_limited_functions : name if contains(keys(local.balanced), name)]) : toset([])
  default_routed = contains(keys(local.balanced), "catalog") ? "catalog" : try(sort(keys(local.balanced))[0], null)
}

resource "google_compute_global_address" "lb" {
  count = local.load_balancer ? 1 : 0

  name       = "${var.name_prefix}-lb"
  depends_on = [google_project_service.required]
}

resource "google_compute_region_network_endpoint_group" "function" {
  for_each = local.balanced

  name                  = "${var.name_prefix}-${each.key}-neg"
  region                = var.region
  network_endpoint_type = "SERVERLESS"

  # A gen2 function runs as the Cloud Run service of the same name.
  cloud_run {
    service = google_cloudfunctions2_function.function[each.key].name
  }
}

resource "google_compute_backend_service" "function" {
  for_each = local.balanced

  name                  = "${var.name_prefix}-${each.key}"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"
  # Serverless backends take no health check (the platform routes to live instances).
  security_policy = contains(local.rate_limited, each.key) ? google_compute_security_policy.rate_limit[0].id : null

  backend {
    group = google_compute_region_network_endpoint_group.function[each.key].id
  }

  log_config {
    enable      = true
    sample_rate = 1.0
  }
}

resource "google_compute_url_map" "https" {
  count = local.load_balancer ? 1 : 0

  name = "${var.name_prefix}-https"
  # A path no rule matches reaches catalog, whose router answers the contract's 404.
  default_service = google_compute_backend_service.function[local.default_routed].id

  host_rule {
    hosts        = [var.domain]
    path_matcher = "functions"
  }

  path_matcher {
    name            = "functions"
    default_service = google_compute_backend_service.function[local.default_routed].id

    dynamic "path_rule" {
      for_each = local.balanced
      content {
        paths   = ["/${path_rule.key}", "/${path_rule.key}/*"]
        service = google_compute_backend_service.function[path_rule.key].id
      }
    }
  }

  lifecycle {
    precondition {
      condition     = length(local.balanced) > 0
      error_message = "var.domain is set but no HTTP function is deployed: nothing to route."
    }
  }
}

resource "google_compute_managed_ssl_certificate" "lb" {
  count = local.load_balancer ? 1 : 0

  name = "${var.name_prefix}-cert"

  managed {
    domains = [var.domain]
  }

  lifecycle {
    create_before_destroy = true
  }
}

# TLS 1.2 or newer, modern ciphers only.
resource "google_compute_ssl_policy" "lb" {
  count = local.load_balancer ? 1 : 0

  name            = "${var.name_prefix}-tls"
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_target_https_proxy" "lb" {
  count = local.load_balancer ? 1 : 0

  name             = "${var.name_prefix}-https"
  url_map          = google_compute_url_map.https[0].id
  ssl_certificates = [google_compute_managed_ssl_certificate.lb[0].id]
  ssl_policy       = google_compute_ssl_policy.lb[0].id
}

resource "google_compute_global_forwarding_rule" "https" {
  count = local.load_balancer ? 1 : 0

  name                  = "${var.name_prefix}-https"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = google_compute_global_address.lb[0].id
  port_range            = "443"
  target                = google_compute_target_https_proxy.lb[0].id
}

# Port 80: a permanent redirect to the same URL over HTTPS, nothing else.
resource "google_compute_url_map" "http_redirect" {
  count = local.load_balancer ? 1 : 0

  name = "${var.name_prefix}-http-redirect"

  default_url_redirect {
    https_redirect         = true
    redirect_response_code = "MOVED_PERMANENTLY_DEFAULT"
    strip_query            = false
  }
}

resource "google_compute_target_http_proxy" "redirect" {
  count = local.load_balancer ? 1 : 0

  name    = "${var.name_prefix}-http-redirect"
  url_map = google_compute_url_map.http_redirect[0].id
}

resource "google_compute_global_forwarding_rule" "http_redirect" {
  count = local.load_balancer ? 1 : 0

  name                  = "${var.name_prefix}-http-redirect"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = google_compute_global_address.lb[0].id
  port_range            = "80"
  target                = google_compute_target_http_proxy.redirect[0].id
}

# Cloud Armor, off by default: per client IP, at most var.rate_limit_per_minute
# requests a minute to each function in var.rate_limited_functions (uploads and
# search by default), then 429 until the minute is over. A campus behind one
# NAT address shares one budget: size the rate for that.
resource "google_compute_security_policy" "rate_limit" {
  count = local.armor ? 1 : 0

  name        = "${var.name_prefix}-rate-limit"
  description = "Per-IP rate limit in front of ${join(", ", sort(tolist(local.rate_limited)))}."

  rule {
    action   = "throttle"
    priority = 1000
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
    rate_limit_options {
      conform_action = "allow"
      exceed_action  = "deny(429)"
      enforce_on_key = "IP"
      rate_limit_threshold {
        count        = var.rate_limit_per_minute
        interval_sec = 60
      }
    }
  }

  rule {
    action   = "allow"
    priority = 2147483647
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
    description = "Everything under the rate."
  }
}

check "rate_limit_needs_the_load_balancer" {
  assert {
    condition     = var.rate_limit_per_minute == 0 || var.domain != null
    error_message = "rate_limit_per_minute is set but domain is not: Cloud Armor sits on the load balancer, so nothing is rate limited."
  }
}
