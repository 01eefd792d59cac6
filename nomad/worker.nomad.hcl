# Skiff worker job template: what the controller submits for each endpoint (as JSON, through
# POST /v1/jobs). It is `skiff render` of the reference endpoint below, kept in step with
# skiff/nomad/render.py by tests/test_nomad_render.py. Regenerate it with:
#   .venv/bin/python -c "import sys; sys.path.insert(0,'tests'); from test_nomad_render import write_template; write_template()"
# Reference endpoint: load_balancer "llm", image ghcr.io/acme/llm:2, 2 x nvidia/gpu (A100 80GB or
# L40S), 4000 MHz, 16 GiB, 1..8 workers, execution_timeout 120s, health path /health.
# The worker key is not in this file: the task's template reads it from the job's Nomad Variable.
# Run it by hand with `nomad var put nomad/jobs/skiff-llm worker_key=<key>` (the key the gateway
# derives for endpoint "llm"), then `nomad job run nomad/worker.nomad.hcl`.

# Rendered by skiff 0.1.0 from endpoint 'llm'; `skiff render` prints it.
job "skiff-llm" {
  type        = "service"
  namespace   = "default"
  datacenters = ["dc1"]

  meta {
    skiff_managed  = "true"
    skiff_endpoint = "llm"
    skiff_version  = "0.1.0"
    spec_hash      = "cf424662b20ef755"
  }

  # max_parallel = 0 disables deployments, so scaling is never blocked;
  # progress_deadline = 0 lets kill_timeout exceed Nomad's 10m default.
  update {
    max_parallel      = 0
    progress_deadline = "0s"
  }

  group "worker" {
    count = 1

    scaling {
      enabled = true
      min     = 0
      max     = 8
    }

    restart {
      attempts = 3
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    reschedule {
      unlimited      = true
      delay          = "10s"
      delay_function = "exponential"
      max_delay      = "5m"
    }

    network {
      mode = "host"
      port "http" {}
      port "health" {}
    }

    service {
      name     = "skiff-llm"
      port     = "http"
      provider = "consul"
      tags     = ["skiff", "endpoint-llm"]

      check {
        name     = "skiff-llm health"
        type     = "http"
        path     = "/health"
        port     = "health"
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "worker" {
      driver       = "docker"
      kill_timeout = "135s"
      kill_signal  = "SIGTERM"

      config {
        image = "ghcr.io/acme/llm:2"
        ports = ["http", "health"]
      }

      env {
        RUNPOD_WEBHOOK_GET_JOB     = "http://skiff-gateway.service.consul:8000/v2/llm/job-take/$ID?gpu=cuda"
        RUNPOD_WEBHOOK_POST_OUTPUT = "http://skiff-gateway.service.consul:8000/v2/llm/job-done/$RUNPOD_POD_ID/$ID?gpu=cuda"
        RUNPOD_WEBHOOK_POST_STREAM = "http://skiff-gateway.service.consul:8000/v2/llm/job-stream/$RUNPOD_POD_ID/$ID?gpu=cuda"
        RUNPOD_WEBHOOK_PING        = "http://skiff-gateway.service.consul:8000/v2/llm/ping/$RUNPOD_POD_ID"
        RUNPOD_PING_INTERVAL       = "10000"
        RUNPOD_POD_ID              = "${NOMAD_ALLOC_ID}"
        RUNPOD_ENDPOINT_ID         = "llm"
        RUNPOD_POD_HOSTNAME        = "${NOMAD_ALLOC_ID}"
        SKIFF_ENDPOINT             = "llm"
        SKIFF_GATEWAY_URL          = "http://skiff-gateway.service.consul:8000"
        PYTHONUNBUFFERED           = "1"
        PORT                       = "${NOMAD_PORT_http}"
        PORT_HEALTH                = "${NOMAD_PORT_health}"
      }

      # RUNPOD_AI_API_KEY from the job's Nomad Variable, never from this file.
      template {
        destination = "secrets/worker.env"
        env         = true
        change_mode = "restart"
        perms       = "0600"
        data        = "{{ with nomadVar \"nomad/jobs/skiff-llm\" }}RUNPOD_AI_API_KEY={{ .worker_key }}{{ end }}"
      }

      resources {
        cpu    = 4000
        memory = 16384

        device "nvidia/gpu" {
          count = 2

          constraint {
            attribute = "${device.model}"
            operator  = "set_contains_any"
            value     = "NVIDIA A100-SXM4-80GB,NVIDIA L40S"
          }

          affinity {
            attribute = "${device.model}"
            operator  = "="
            value     = "NVIDIA A100-SXM4-80GB"
            weight    = 100
          }

          affinity {
            attribute = "${device.model}"
            operator  = "="
            value     = "NVIDIA L40S"
            weight    = 50
          }
        }
      }
    }
  }
}
