# Skiff controller: reconciles endpoint files with Nomad and autoscales every endpoint.
#
#   nomad var put nomad/jobs/skiff-controller @controller-vars.json   # once, see docs/cluster.md
#   nomad acl policy apply -namespace default -job skiff-controller \
#     skiff-controller nomad/policies/skiff-controller.policy.hcl
#   nomad job run -var image=ghcr.io/acme/skiff:0.1.0 nomad/controller.nomad.hcl
#
# Exactly one controller may act at a time. Nomad runs one allocation, but during a node
# partition or a deployment an old allocation can still be alive while its replacement starts,
# so the controller also holds a Consul session lock (SKIFF_DISCOVERY=consul) and only acts
# while it owns it; a second instance waits on the lock.

variable "image" {
  type        = string
  description = "Skiff server image: the root Dockerfile, built and tagged by scripts/build-images.sh (docs/images.md)."
  default     = "ghcr.io/skiff-dev/skiff:0.1.0"
}

variable "datacenters" {
  type        = list(string)
  description = "Datacenters the controller may run in."
  default     = ["dc1"]
}

variable "node_pool" {
  type        = string
  description = "Node pool of the system nodes."
  default     = "system"
}

job "skiff-controller" {
  type        = "service"
  datacenters = var.datacenters
  node_pool   = var.node_pool

  # Stop the old controller before starting the new one; the Consul lock covers the rest.
  update {
    max_parallel     = 1
    health_check     = "task_states"
    min_healthy_time = "10s"
    healthy_deadline = "5m"
    auto_revert      = true
  }

  group "controller" {
    count = 1

    # The controller serves /healthz, /v1/status and /metrics (the last two behind the client
    # key) on a dynamic port. Its Consul check is informational: Nomad's restart policy covers
    # crashes, and the Consul session lock (not the task's health) decides who acts.
    network {
      port "http" {}
    }

    service {
      name     = "skiff-controller"
      port     = "http"
      provider = "consul"
      # Prometheus finds scrape targets by this tag (consul_sd_configs); docs/operations.md.
      tags = ["skiff", "controller", "prometheus"]
      meta {
        metrics_path = "/metrics"
      }

      check {
        name     = "controller healthz"
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    restart {
      attempts = 5
      interval = "10m"
      delay    = "15s"
      mode     = "delay"
    }

    reschedule {
      delay          = "30s"
      delay_function = "exponential"
      max_delay      = "5m"
      unlimited      = true
    }

    task "controller" {
      driver = "docker"

      config {
        image        = var.image
        entrypoint   = ["skiff"]
        args         = ["controller"]
        network_mode = "host"
      }

      # A workload identity token in NOMAD_TOKEN: the ACL policy applied to this job
      # (nomad/policies/skiff-controller.policy.hcl) lets it register, scale and stop worker jobs.
      # https://developer.hashicorp.com/nomad/docs/concepts/workload-identity
      identity {
        env = true
      }

      env {
        SKIFF_ORCHESTRATOR = "nomad"
        SKIFF_DISCOVERY    = "consul"
        SKIFF_NOMAD_ADDR   = "https://127.0.0.1:4646"
        SKIFF_CONSUL_ADDR  = "http://127.0.0.1:8500"
        SKIFF_HOST         = "0.0.0.0"
        SKIFF_CONTROLLER_PORT = "${NOMAD_PORT_http}"
        NOMAD_CACERT       = "${NOMAD_SECRETS_DIR}/cluster-ca.pem"
        AWS_CONFIG_FILE    = "${NOMAD_SECRETS_DIR}/aws-config"
        AWS_PROFILE        = "skiff"
      }

      template {
        destination = "${NOMAD_SECRETS_DIR}/skiff.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
        {{- with nomadVar "nomad/jobs/skiff-controller" }}
        {{- range .Tuples }}
        {{- if and (ne .K "aws_role_arn") (ne .K "cluster_ca") }}
        {{ .K }}={{ .V }}
        {{- end }}
        {{- end }}
        {{- end }}
        EOT
      }

      template {
        destination = "${NOMAD_SECRETS_DIR}/cluster-ca.pem"
        change_mode = "restart"
        data        = <<-EOT
        {{- with nomadVar "nomad/jobs/skiff-controller" }}{{ .cluster_ca }}{{ end }}
        EOT
      }

      template {
        destination = "${NOMAD_SECRETS_DIR}/aws-config"
        change_mode = "restart"
        data        = <<-EOT
        [profile skiff]
        {{- with nomadVar "nomad/jobs/skiff-controller" }}
        role_arn = {{ .aws_role_arn }}
        {{- end }}
        credential_source = Ec2InstanceMetadata
        EOT
      }

      resources {
        cpu    = 500
        memory = 512
      }

      kill_timeout = "20s"
    }
  }
}
