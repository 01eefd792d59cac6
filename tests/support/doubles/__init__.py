"""HTTP doubles for services that cannot run on the test machines (Nomad, Consul).

Each is a real HTTP server on 127.0.0.1 answering with the documented JSON shapes, status codes
and blocking-query index headers; each shape cites the page or source file it follows.
"""
