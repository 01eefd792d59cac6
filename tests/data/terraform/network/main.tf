module "network" {
  source = "../../modules/network"

  name               = "ci-network"
  cidr_block         = "10.41.0.0/16"
  az_count           = 2
  single_nat_gateway = false
}
