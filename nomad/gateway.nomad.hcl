# Skiff gateway: the stateless HTTP front door (client API, worker API, load_balancer proxy).
# Every replica serves any request; all state lives in the queue and the job store.
#
#   nomad var put nomad/jobs/skiff-gateway @gateway-vars.json   # once, see docs/cluster.md
#   nomad job run -var image=ghcr.io/acme/skiff:0.1.0 nomad/gateway.nomad.hcl
#
# Configuration is never baked in: the template below turns every item of the Nomad Variable
# nomad/jobs/skiff-gateway into an environment variable (SKIFF_* settings, secrets included),
# and a change to the variable restarts the tasks one at a time.

variable "image" {
  type        = string
  description = "Skiff server image: the root Dockerfile, built and tagged by scripts/build-images.sh (docs/images.md)."
  default     = "ghcr.io/skiff-dev/skiff:0.1.0"
}

variable "replicas" {
  type        = number
  description = "Gateway replicas; one per system node because the port is static (the load balancer targets the nodes)."
  default     = 2
}

variable "datacenters" {
  type        = list(string)
  description = "Datacenters the gateway may run in."
  default     = ["dc1"]
}

variable "node_pool" {
  type        = string
  description = "Node pool of the system nodes (never the GPU pool: user workers must not share nodes with the gateway's credentials)."
  default     = "system"
}

variable "port" {
  type        = number
  description = "Port the gateway listens on (SKIFF_PORT); the load balancer's target group uses the same."
  default     = 8000
}

job "skiff-gateway" {
  type        = "service"
  datacenters = var.datacenters
  node_pool   = var.node_pool

  update {
    max_parallel      = 1
    health_check      = "checks"
    min_healthy_time  = "10s"
    healthy_deadline  = "5m"
    progress_deadline = "10m"
    auto_revert       = true
  }

  group "gateway" {
    count = var.replicas

    # The static port means one replica per node; say so instead of failing placement.
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    network {
      port "http" {
        static = var.port
      }
    }

    service {
      name     = "skiff-gateway"
      port     = "http"
      provider = "consul"
      # Prometheus finds scrape targets by the "prometheus" tag (consul_sd_configs); docs/operations.md.
      tags = ["skiff", "gateway", "prometheus"]
      meta {
        metrics_path = "/metrics"
      }

      check {
        name     = "gateway healthz"
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"

        check_restart {
          limit = 3
          grace = "30s"
        }
      }
    }

    restart {
      attempts = 3
      interval = "5m"
      delay    = "10s"
      mode     = "delay"
    }

    task "gateway" {
      driver = "docker"

      config {
        image      = var.image
        entrypoint = ["skiff"]
        args       = ["gateway"]
        # Host networking: the task reaches the node's Consul agent on 127.0.0.1:8500 (bound to
        # loopback only) and Nomad's HTTPS API on 127.0.0.1:4646.
        network_mode = "host"
        ports        = ["http"]
      }

      env {
        SKIFF_HOST        = "0.0.0.0"
        SKIFF_PORT        = "${NOMAD_PORT_http}"
        SKIFF_CONSUL_ADDR = "http://127.0.0.1:8500"
        AWS_CONFIG_FILE   = "${NOMAD_SECRETS_DIR}/aws-config"
        AWS_PROFILE       = "skiff"
      }

      # Settings and secrets from the job's Nomad Variable (implicitly readable by this job
      # through its workload identity: nomad/jobs/<job id>).
      # https://developer.hashicorp.com/nomad/docs/job-specification/template#nomad-variables
      template {
        destination = "${NOMAD_SECRETS_DIR}/skiff.env"
        env         = true
        change_mode = "restart"
        splay       = "30s"
        data        = <<-EOT
        {{- with nomadVar "nomad/jobs/skiff-gateway" }}
        {{- range .Tuples }}
        {{- if ne .K "aws_role_arn" }}
        {{ .K }}={{ .V }}
        {{- end }}
        {{- end }}
        {{- end }}
        EOT
      }

      # The gateway's IAM task role, assumed from the node's instance profile by the AWS SDK.
      template {
        destination = "${NOMAD_SECRETS_DIR}/aws-config"
        change_mode = "restart"
        data        = <<-EOT
        [profile skiff]
        {{- with nomadVar "nomad/jobs/skiff-gateway" }}
        role_arn = {{ .aws_role_arn }}
        {{- end }}
        credential_source = Ec2InstanceMetadata
        EOT
      }

      resources {
        cpu    = 1000
        memory = 512
      }

      # Long polls (job-take, /runsync) are held open; let them finish on shutdown.
      kill_timeout = "30s"
      kill_signal  = "SIGTERM"
    }
  }
}
