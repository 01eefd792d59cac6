# Nomad ACL policy for the controller's workload identity: manage worker jobs in its namespace,
# read node pools and allocations, nothing else (no node, operator or agent writes).
# Apply with: nomad acl policy apply -namespace default -job skiff-controller skiff-controller <this file>
# Capabilities: https://developer.hashicorp.com/nomad/docs/other-specifications/acl-policy
namespace "default" {
  capabilities = ["list-jobs", "read-job", "submit-job", "dispatch-job", "read-logs", "scale-job", "read-job-scaling"]
}

node_pool "gpu" {
  policy = "read"
}
