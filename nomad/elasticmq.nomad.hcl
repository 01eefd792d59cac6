# ElasticMQ: an SQS-compatible queue for clusters outside AWS (on AWS Skiff uses SQS itself;
# see terraform/modules/queues). Skiff talks to it through boto3 exactly as to SQS:
#
#   SKIFF_QUEUE=sqs
#   SKIFF_SQS_ENDPOINT_URL=http://skiff-elasticmq.service.consul:9324
#
# The controller creates the per-endpoint queues through the API, so none are declared here.
# Queue metadata and messages are persisted on the host volume "skiff-elasticmq" (H2 file), so
# a restart loses no job. ElasticMQ has no authentication: keep port 9324 reachable from the
# system nodes only (security groups / firewall), like Redis.

variable "image" {
  type        = string
  description = "ElasticMQ image (the native build starts in milliseconds and needs no JVM)."
  default     = "softwaremill/elasticmq-native:1.6.15"
}

variable "datacenters" {
  type        = list(string)
  description = "Datacenters ElasticMQ may run in."
  default     = ["dc1"]
}

variable "node_pool" {
  type        = string
  description = "Node pool to run ElasticMQ in."
  default     = "system"
}

job "skiff-elasticmq" {
  type        = "service"
  datacenters = var.datacenters
  node_pool   = var.node_pool

  group "elasticmq" {
    count = 1

    network {
      port "sqs" {
        static = 9324
      }
    }

    volume "data" {
      type      = "host"
      source    = "skiff-elasticmq"
      read_only = false
    }

    service {
      name     = "skiff-elasticmq"
      port     = "sqs"
      provider = "consul"
      tags     = ["skiff", "sqs"]

      check {
        name     = "elasticmq tcp"
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "elasticmq" {
      driver = "docker"

      config {
        image = var.image
        ports = ["sqs"]

        # The native image reads /opt/elasticmq.conf; a relative bind source stays inside the
        # allocation directory, which Nomad allows even with host volumes disabled.
        mount {
          type     = "bind"
          source   = "local/elasticmq.conf"
          target   = "/opt/elasticmq.conf"
          readonly = true
        }
      }

      volume_mount {
        volume      = "data"
        destination = "/data"
      }

      # https://github.com/softwaremill/elasticmq#configuration (queues-storage, messages-storage)
      template {
        destination = "local/elasticmq.conf"
        change_mode = "restart"
        data        = <<-EOT
        include classpath("application.conf")

        node-address {
          protocol = http
          host = "{{ env "NOMAD_IP_sqs" }}"
          port = 9324
          context-path = ""
        }

        rest-sqs {
          enabled = true
          bind-port = 9324
          bind-hostname = "0.0.0.0"
          sqs-limits = strict
        }

        queues-storage {
          enabled = true
          path = "/data/queues.conf"
        }

        messages-storage {
          enabled = true
          uri = "jdbc:h2:/data/elasticmq"
        }
        EOT
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
