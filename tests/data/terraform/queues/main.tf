module "queues" {
  source = "../../modules/queues"

  name         = "ci-queues"
  queue_prefix = "ci-queues-"
}
