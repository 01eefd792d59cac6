endpoint "nothing-to-run" {
  type = "queue"
}

endpoint "empty-command" {
  command = []
}
