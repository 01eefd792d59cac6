endpoint "twin" {
  command = ["python", "a.py"]
}
