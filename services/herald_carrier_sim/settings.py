"""The carrier double's settings section (`HERALD_CARRIER_SIM_*`)."""

from __future__ import annotations

import msgspec


class CarrierSimSettings(msgspec.Struct, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8090
    receipt_url: str = "http://127.0.0.1:8080/v1/providers/carrier-sim/receipts"
    receipt_delay_ms: int = 50
    receipt_batch_max: int = 200
    """Receipts per POST (to `<receipt_url>/batch`); 1 sends each on its own."""
    receipt_batch_ms: int = 20
    """How long a due receipt may wait for others to share its POST."""
    latency_ms: int = 5
    """Median send latency."""
    latency_p99_ms: int = 0
    """99th percentile of send latency (log-normal); 0 means the median, i.e. constant."""
    max_per_second: float = 0.0
    """Throughput cap answering 429 + Retry-After beyond it; 0 is none."""
    throttle_retry_after: bool = True
    """Whether a throughput 429 names its wait (the time to the next token). False: it names
    none, as many providers' rate-limit errors do, and the sender must pick its own pause."""
