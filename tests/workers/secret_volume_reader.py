"""Test worker (Skiff SDK): answers with the secret HF_TOKEN from its environment and, given
{"file": name}, the text of that file in the `models` volume (SKIFF_VOLUME_MODELS)."""

import os

import skiff.serverless


def handler(job):
    answer = {"token": os.environ.get("HF_TOKEN"), "volume": os.environ.get("SKIFF_VOLUME_MODELS")}
    name = job["input"].get("file")
    if name:
        with open(os.path.join(os.environ["SKIFF_VOLUME_MODELS"], name), encoding="utf-8") as file:
            answer["file"] = file.read()
    return answer


skiff.serverless.start({"handler": handler})
