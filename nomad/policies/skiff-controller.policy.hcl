# Nomad ACL policy for the controller's workload identity: manage worker jobs in its namespace,
# their worker keys, read node pools and allocations, nothing else (no node, operator or agent writes).
# Apply with: nomad acl policy apply -namespace default -job skiff-controller skiff-controller <this file>
# Capabilities: https://developer.hashicorp.com/nomad/docs/other-specifications/acl-policy
namespace "default" {
  # alloc-lifecycle: stopping one allocation so Nomad replaces it (a worker that sent stopPod).
  capabilities = ["list-jobs", "read-job", "submit-job", "dispatch-job", "read-logs", "scale-job", "read-job-scaling", "alloc-lifecycle"]

  # Each endpoint's worker key is the Nomad Variable nomad/jobs/skiff-<endpoint> (item worker_key):
  # the controller reads it to skip unchanged writes, writes it before registering the job and
  # destroys it when the endpoint is removed. Worker tasks read it through their own workload
  # identity, with no policy. Syntax and capabilities ("read" adds "list"; "write" adds nothing,
  # acl/policy.go expandVariablesCapabilities):
  # https://developer.hashicorp.com/nomad/docs/concepts/variables#acl-for-variables
  variables {
    path "nomad/jobs/skiff-*" {
      capabilities = ["write", "read", "destroy"]
    }

    # The glob also matches Skiff's own jobs' configuration. The most specific rule for a path
    # applies, so these exact paths are denied. Not skiff-controller: this policy is attached to
    # the controller's workload identity, and an exact rule there would override its implicit
    # read of its own variable (concepts/variables, "Task Access to Variables").
    path "nomad/jobs/skiff-gateway" {
      capabilities = ["deny"]
    }

    path "nomad/jobs/skiff-redis" {
      capabilities = ["deny"]
    }

    path "nomad/jobs/skiff-elasticmq" {
      capabilities = ["deny"]
    }
  }
}

node_pool "gpu" {
  policy = "read"
}
