# Redis as Skiff's job store for clusters outside AWS (on AWS use terraform/modules/redis).
#
#   nomad var put nomad/jobs/skiff-redis password=$(openssl rand -hex 32)
#   nomad job run nomad/redis.nomad.hcl
#
# Then SKIFF_REDIS_URL=redis://:<password>@skiff-redis.service.consul:6379/0 in the gateway's and
# controller's Nomad Variables. The password comes from the Nomad Variable, never from this file.
# Clients need a host volume "skiff-redis" (client { host_volume "skiff-redis" { path = ... } })
# so the append-only file survives restarts: jobs in flight are never lost with the container.

variable "image" {
  type        = string
  description = "Redis image."
  default     = "redis:7.4-alpine"
}

variable "datacenters" {
  type        = list(string)
  description = "Datacenters Redis may run in."
  default     = ["dc1"]
}

variable "node_pool" {
  type        = string
  description = "Node pool to run Redis in."
  default     = "system"
}

job "skiff-redis" {
  type        = "service"
  datacenters = var.datacenters
  node_pool   = var.node_pool

  group "redis" {
    count = 1

    network {
      port "redis" {
        static = 6379
      }
    }

    volume "data" {
      type      = "host"
      source    = "skiff-redis"
      read_only = false
    }

    service {
      name     = "skiff-redis"
      port     = "redis"
      provider = "consul"
      tags     = ["skiff", "redis"]

      check {
        name     = "redis tcp"
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "redis" {
      driver = "docker"

      config {
        image = var.image
        ports = ["redis"]
        args  = ["redis-server", "/secrets/redis.conf"]
      }

      volume_mount {
        volume      = "data"
        destination = "/data"
      }

      template {
        destination = "${NOMAD_SECRETS_DIR}/redis.conf"
        change_mode = "restart"
        perms       = "0600"
        data        = <<-EOT
        bind 0.0.0.0
        port 6379
        protected-mode yes
        dir /data
        appendonly yes
        appendfsync everysec
        # Only keys with a TTL (finished jobs) may be evicted, never queued or running state.
        maxmemory-policy volatile-lru
        {{- with nomadVar "nomad/jobs/skiff-redis" }}
        requirepass {{ .password }}
        {{- end }}
        EOT
      }

      resources {
        cpu    = 500
        memory = 1024
      }
    }
  }
}
