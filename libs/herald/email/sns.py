"""Amazon SNS messages, as SES's event notifications arrive over HTTPS: parsed and verified.

An SNS message is believed only when its signature verifies under the certificate named by
`SigningCertURL`, and that URL is one Herald trusts (AWS's `https://sns.<region>.amazonaws.com/
….pem`, or a prefix configured for a double). The signed string is SNS's canonical form (AWS SNS
Developer Guide, "Verifying the signatures of Amazon SNS messages"): the listed fields, each name
and value on its own line, in that order; `SignatureVersion` 1 is RSA-SHA1, 2 RSA-SHA256. No AWS
library verifies SNS messages (botocore signs requests, it does not check SNS's signatures), so
this is the documented procedure on `cryptography`'s primitives.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from enum import StrEnum

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

_AWS_CERT = re.compile(r"https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[^?#]+\.pem")
_AWS_SNS = re.compile(r"https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/")
_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SUBSCRIPTION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")


class Kind(StrEnum):
    NOTIFICATION = "Notification"
    SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
    UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"


class SnsMessage(msgspec.Struct, frozen=True):
    Type: Kind
    MessageId: str
    TopicArn: str
    Message: str
    Timestamp: str
    SignatureVersion: str
    Signature: str
    SigningCertURL: str
    Subject: str | None = None
    SubscribeURL: str | None = None
    Token: str | None = None


class Unverified(ValueError):
    """Not a message SNS signed (why is the message)."""


_DECODER = msgspec.json.Decoder(SnsMessage)


def parse(body: bytes) -> SnsMessage:
    """Raises msgspec.ValidationError or msgspec.DecodeError for what is not an SNS message."""
    return _DECODER.decode(body)


def trusted_cert_url(url: str, extra_prefixes: Sequence[str] = ()) -> bool:
    return bool(_AWS_CERT.fullmatch(url)) or any(url.startswith(p) for p in extra_prefixes if p)


def trusted_sns_url(url: str, extra_prefixes: Sequence[str] = ()) -> bool:
    """A URL on SNS itself (a subscription's `SubscribeURL`), or under a configured prefix."""
    return bool(_AWS_SNS.match(url)) or any(url.startswith(p) for p in extra_prefixes if p)


def signed_text(message: SnsMessage) -> bytes:
    fields = _NOTIFICATION_FIELDS if message.Type is Kind.NOTIFICATION else _SUBSCRIPTION_FIELDS
    values = msgspec.structs.asdict(message)
    return "".join(f"{name}\n{values[name]}\n" for name in fields if values.get(name) is not None).encode()


def verify(message: SnsMessage, cert_pem: bytes) -> None:
    """Raises Unverified unless `message` is signed by the key of `cert_pem`."""
    algorithm: hashes.HashAlgorithm
    if message.SignatureVersion == "1":
        algorithm = hashes.SHA1()  # noqa: S303 (SNS's version 1 is SHA1, by its specification)
    elif message.SignatureVersion == "2":
        algorithm = hashes.SHA256()
    else:
        raise Unverified(f"unknown SignatureVersion {message.SignatureVersion!r}")
    try:
        key = x509.load_pem_x509_certificate(cert_pem).public_key()
        signature = base64.b64decode(message.Signature, validate=True)
    except ValueError as exc:
        raise Unverified("unreadable certificate or signature") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise Unverified("the certificate's key is not RSA")
    try:
        key.verify(signature, signed_text(message), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise Unverified("the signature does not verify") from None
