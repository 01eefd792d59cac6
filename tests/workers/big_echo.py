"""Test worker (Skiff SDK) for big payloads: reports what it received and returns as much as asked.

Input: {"blob": s, "size": n} returns {"blob_length": len(s), "blob_sha256": <hex>, "data": "x" * n};
either key may be left out.
"""

import hashlib

import skiff.serverless


def handler(job):
    job_input = job["input"]
    blob = job_input.get("blob", "")
    return {
        "blob_length": len(blob),
        "blob_sha256": hashlib.sha256(blob.encode()).hexdigest(),
        "data": "x" * int(job_input.get("size", 0)),
    }


skiff.serverless.start({"handler": handler})
