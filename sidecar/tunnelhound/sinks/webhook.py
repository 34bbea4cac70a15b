"""Webhook alert sink: each alert POSTed as its JSON document, retried with capped backoff.

Answers: 2xx is delivered; 408, 425, 429 and 5xx (and connection errors, timeouts) are retried,
honouring a ``Retry-After`` of seconds up to the backoff cap; any other status is a permanent
refusal (counted ``failed``).  Requests go out from a background thread
(:mod:`tunnelhound.sinks.delivery`), so a slow or dead endpoint never holds up the pipeline.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from tunnelhound import __version__
from tunnelhound.sinks.alertsink import SinkStats
from tunnelhound.sinks.delivery import Deliverer, DeliveryError, DeliveryPolicy

__all__ = ["WebhookSink"]

_RETRY_STATUSES = frozenset({408, 425, 429})


class WebhookSink:
    """POST every alert to ``url`` as ``application/json``.

    ``headers`` are sent with every request (e.g. ``Authorization``); ``tls`` verifies an
    ``https`` endpoint (default: system CAs).
    """

    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        policy: DeliveryPolicy | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http:// or https://, not {url!r}")
        self.url = url
        self.timeout = timeout
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": f"tunnelhound/{__version__}",
            **(headers or {}),
        }
        self._tls = tls
        self._stats = SinkStats()
        self._deliverer: Deliverer[bytes] = Deliverer(
            f"webhook {url}", self._post, self._stats, policy or DeliveryPolicy()
        )

    def write_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """Serialize and queue one request per alert."""
        for alert in alerts:
            try:
                body = orjson.dumps(alert)
            except TypeError:  # a value that is not JSON (the producer's bug)
                self._stats.add("failed")
                continue
            self._deliverer.put(body)

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(self.url, data=body, headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._tls) as response:
                response.read()
        except urllib.error.HTTPError as err:
            status = err.code
            err.close()
            if status in _RETRY_STATUSES or status >= 500:
                raise DeliveryError(
                    f"HTTP {status} {err.reason}", retry_after=_seconds(err.headers)
                ) from None
            raise DeliveryError(f"HTTP {status} {err.reason}", permanent=True) from None
        except urllib.error.URLError as err:
            # Connection refused, DNS, TLS: the endpoint may come back.
            raise DeliveryError(f"{self.url}: {err.reason}") from None

    def close(self) -> None:
        """Send what is queued, bounded by the close timeout."""
        self._deliverer.close()

    def stats(self) -> dict[str, int]:
        """sent/failed/dropped/retried and the queue length."""
        return {**self._stats.snapshot(), "queued": self._deliverer.queued}


def _seconds(headers: Any) -> float | None:
    """A ``Retry-After`` given in seconds (the HTTP-date form is ignored: backoff applies)."""
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
