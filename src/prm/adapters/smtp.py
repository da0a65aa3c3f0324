"""Email over SMTP with `aiosmtplib`: a text part, an optional HTML alternative, attachments.

Connection errors, timeouts and 4xx SMTP replies are transient; 5xx replies (unknown mailbox,
refused recipient) are permanent.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib
import structlog

from prm.adapters.channels import OutboundEmail, PermanentDeliveryError, SendResult, TransientDeliveryError

log = structlog.get_logger(__name__)


def build_message(email: OutboundEmail, *, message_id: str | None = None) -> EmailMessage:
    """The MIME message: text/plain, text/html alternative, then each attachment."""
    msg = EmailMessage()
    msg["From"] = email.from_
    msg["To"] = email.to
    msg["Subject"] = email.subject
    msg["Message-ID"] = message_id or make_msgid(domain=email.from_.rpartition("@")[2].strip(">") or None)
    if email.reply_to:
        msg["Reply-To"] = email.reply_to
    msg.set_content(email.text)
    if email.html:
        msg.add_alternative(email.html, subtype="html")
    for attachment in email.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        msg.add_attachment(
            attachment.content,
            maintype=maintype,
            subtype=subtype or "octet-stream",
            filename=attachment.filename,
        )
    return msg


class SmtpChannel:
    """`EmailChannel` for any SMTP server."""

    name = "smtp"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool = False,
        start_tls: bool | None = None,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.use_tls = use_tls
        self.start_tls = start_tls
        self.timeout = timeout_seconds

    async def send_email(self, email: OutboundEmail) -> SendResult:
        msg = build_message(email, message_id=email.message_id)
        try:
            await aiosmtplib.send(
                msg,
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.use_tls,
                start_tls=self.start_tls,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = {str(e.code) for e in exc.recipients}
            log.warning("smtp.refused", smtp_codes=sorted(codes))
            code = sorted(codes)[0] if codes else "550"
            error = PermanentDeliveryError if code.startswith("5") else TransientDeliveryError
            raise error("the mail server refused the recipient", code=code) from None
        except aiosmtplib.SMTPResponseException as exc:
            log.warning("smtp.error", smtp_code=exc.code)
            error = PermanentDeliveryError if 500 <= exc.code < 600 else TransientDeliveryError
            raise error(f"the mail server answered {exc.code}", code=str(exc.code)) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("smtp.unreachable", error=type(exc).__name__)
            raise TransientDeliveryError(
                "the mail server could not be reached", code="connection_error"
            ) from None
        return SendResult(provider=self.name, provider_message_id=str(msg["Message-ID"]), status="sent")
