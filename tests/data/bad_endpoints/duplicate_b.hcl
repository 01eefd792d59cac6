# The same name as in duplicate_a.hcl.
endpoint "twin" {
  command = ["python", "b.py"]
}
