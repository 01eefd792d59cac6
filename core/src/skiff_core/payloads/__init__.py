"""Big job inputs and outputs: stored beside the job (files embedded, S3 in a cluster), referenced inline."""

from skiff_core.payloads.base import (
    PAYLOAD_KEY,
    PayloadKind,
    PayloadMissing,
    PayloadStore,
    dereference,
    payload_ref,
    reference,
    should_inline,
    stays_inline,
)

__all__ = [
    "PAYLOAD_KEY",
    "PayloadKind",
    "PayloadMissing",
    "PayloadStore",
    "dereference",
    "payload_ref",
    "reference",
    "should_inline",
    "stays_inline",
]
