"""Client TLS contexts for the alert sinks (syslog over TLS, webhook, SMTP)."""

from __future__ import annotations

import ssl

__all__ = ["tls_context"]


def tls_context(
    ca_certs: str = "", verify: bool = True, certfile: str = "", keyfile: str = ""
) -> ssl.SSLContext:
    """A client context trusting ``ca_certs`` (system CAs when empty), with an optional client
    certificate; ``verify=False`` turns off certificate and host name checks (labs only)."""
    context = ssl.create_default_context(cafile=ca_certs or None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if certfile:
        context.load_cert_chain(certfile, keyfile or None)
    return context
