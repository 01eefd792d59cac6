# Consul ACL policy for the gateway's and controller's token (SKIFF_CONSUL_TOKEN): discover
# healthy worker instances and hold the controller's leader lock under skiff/.
# consul acl policy create -name skiff -rules @nomad/policies/skiff-consul.policy.hcl
service_prefix "skiff-" {
  policy = "read"
}

node_prefix "" {
  policy = "read"
}

key_prefix "skiff/" {
  policy = "write"
}

session_prefix "" {
  policy = "write"
}
