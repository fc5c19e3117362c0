"""Email's pure rules: rendering (escaping, one-line subjects), DKIM records, signed bounce
addresses, unsubscribe tokens, and reading delivery and feedback reports.

Report samples follow RFC 3464's appendix (a failure report) and RFC 5965 §B.1 (an abuse report).
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from herald.domain.email import decode, encode, lint_parts, published, render
from herald.domain.models import Category
from herald.domain.templates import EmailParts
from herald.email import keys, sns
from herald.email.bounces import BounceAddresses
from herald.email.reports import Kind, from_ses, original_message_id, parse
from herald.email.unsubscribe import BadToken, Tokens, Unsubscribe
from herald.errors import InvalidRequest

PARTS = EmailParts(subject="Order {{order}}", html="<p>Hi {{name}}, order <b>{{order}}</b></p>")
BODY = "Hi {{name}}, order {{order}}"
KEK, OLD = b"k" * 32, b"o" * 32


def test_html_params_are_escaped_and_text_params_are_not() -> None:
    content = render(BODY, PARTS, {"name": '<img src=x onerror="a()">', "order": "A&B"})
    assert content.subject == "Order A&B"
    assert content.text == 'Hi <img src=x onerror="a()">, order A&B'
    assert content.html == "<p>Hi &lt;img src=x onerror=&quot;a()&quot;&gt;, order <b>A&amp;B</b></p>"
    assert decode(encode(content)) == content


@pytest.mark.parametrize("value", ["A1\r\nBcc: x@example.org", "A1\nX", "A1\x00", "A1\x7f"])
def test_a_subject_param_must_be_one_line(value: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        render(BODY, PARTS, {"name": "Ann", "order": value})
    assert raised.value.code == "params_invalid"
    assert [f.field for f in raised.value.fields] == ["params.order"]


def test_a_line_break_is_fine_in_a_param_the_subject_does_not_use() -> None:
    assert render(BODY, PARTS, {"name": "Ann\r\nBcc: x", "order": "1"}).text == "Hi Ann\r\nBcc: x, order 1"


def test_params_are_checked_against_every_part() -> None:
    with pytest.raises(InvalidRequest) as raised:
        render(BODY, PARTS, {"name": "Ann"})
    assert (raised.value.code, [f.field for f in raised.value.fields]) == ("params_missing", ["params.order"])
    with pytest.raises(InvalidRequest) as raised:
        render(BODY, PARTS, {"name": "Ann", "order": "1", "extra": "x"})
    assert [f.field for f in raised.value.fields] == ["params.extra"]


def test_the_linter_checks_the_subject_and_the_html_part() -> None:
    assert lint_parts(PARTS, BODY, Category.UTILITY) == []
    problems = lint_parts(EmailParts(subject="Big sale {{x", html="<p>{{name}}</p>"), BODY, Category.UTILITY)
    fields = sorted({p.field for p in problems})
    assert fields == ["email.html", "email.subject"]
    assert any("same placeholders" in p.message for p in problems)
    assert any("marketing" in p.message for p in problems)
    assert lint_parts(EmailParts(subject="a\r\nb"), "x", Category.UTILITY)[0].field == "email.subject"


def test_a_dkim_record_is_recognised_however_it_is_split_or_spaced() -> None:
    pem = keys.generate()
    public = keys.public(pem)
    assert published([f"v=DKIM1; k=rsa; p={public}"], public)
    assert published([f"v=DKIM1;k=rsa;  p={public[:100]} {public[100:]}"], public)
    assert not published([f"v=DKIM1; k=rsa; p={public[:-8]}AAAAAAAA"], public)
    assert not published(["v=spf1 -all"], public)


def test_an_imported_key_must_be_an_rsa_private_key_of_a_usable_size() -> None:
    assert keys.public(keys.imported(keys.generate().decode())) != ""
    for bad in ("not a key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"):
        with pytest.raises(keys.BadKey):
            keys.imported(bad)


def test_a_bounce_address_names_its_message_only_if_herald_signed_it() -> None:
    addresses = BounceAddresses([KEK])
    message_id = uuid.uuid4()
    address = addresses.address(message_id, "mail.shop.example")
    assert len(address.partition("@")[0]) <= 64  # RFC 5321's local-part limit
    assert addresses.message_of(address) == (message_id, "mail.shop.example")
    assert addresses.message_of(f"<{address.upper()}>") == (message_id, "mail.shop.example")
    other = uuid.uuid4()
    assert addresses.message_of(address.replace(message_id.hex, other.hex)) is None
    assert addresses.message_of(address.replace(address[41:61], "0" * 20)) is None
    assert BounceAddresses([b"x" * 32]).message_of(address) is None
    # After a KEK rotation, addresses minted under the previous KEK still name their message.
    assert BounceAddresses([b"n" * 32, KEK]).message_of(address) == (message_id, "mail.shop.example")


@given(st.emails())
def test_an_unsubscribe_token_opens_to_what_was_minted_and_nothing_else(address: str) -> None:
    tokens = Tokens([KEK])
    what = Unsubscribe(uuid.uuid4(), uuid.uuid4(), address)
    token = tokens.mint(what)
    assert address not in token  # the address does not travel in clear
    assert tokens.open(token) == what
    assert Tokens([b"n" * 32, KEK]).open(token) == what  # minted before a rotation
    for forged in (token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), "u1" + token[2:], token[:20], "", "!!"):
        with pytest.raises(BadToken):
            tokens.open(forged)
    with pytest.raises(BadToken):
        Tokens([OLD]).open(token)


FAILURE = b"""From: Mail Delivery Subsystem <MAILER-DAEMON@CS.UTK.EDU>
To: <bounces+x@mail.shop.example>
Subject: Returned mail: Cannot send message for 5 days
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
    boundary="RAA14128.773615765/CS.UTK.EDU"

--RAA14128.773615765/CS.UTK.EDU

The original message was received at Sat, 11 Jul 1998 13:07:29 -0400

--RAA14128.773615765/CS.UTK.EDU
Content-Type: message/delivery-status

Reporting-MTA: dns; cs.utk.edu

Original-Recipient: rfc822;louisl@larry.slip.umd.edu
Final-Recipient: rfc822;louisl@larry.slip.umd.edu
Action: failed
Status: 4.0.0
Diagnostic-Code: smtp; 426 connection timed out

Final-Recipient: rfc822;bob@example.org
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <bob@example.org>... User unknown

Final-Recipient: rfc822;carol@example.org
Action: delayed
Status: 4.2.2

--RAA14128.773615765/CS.UTK.EDU
Content-Type: text/rfc822-headers

Message-ID: <01a243c7-5d48-726c-8bcc-9865ad00d738@mail.shop.example>
Subject: Your order

--RAA14128.773615765/CS.UTK.EDU--
"""

ABUSE = b"""From: <abusedesk@example.com>
To: <bounces+x@mail.shop.example>
Subject: FW: Earn money
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
     boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"

This is an email abuse report for an email message received from IP 192.0.2.1.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <somespammer@example.net>
Original-Rcpt-To: <user@example.com>
Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

From: <somespammer@example.net>
To: <user@example.com>
Subject: Earn money
Message-ID: <8787KJKJ3K4J3K4J3K4J3.mail@example.net>

Spam Spam Spam
--part1_13d.2e68ed54_boundary--
"""


def test_a_delivery_report_is_read_per_recipient_without_its_free_text() -> None:
    reports = parse(FAILURE)
    assert [(r.kind, r.recipient, r.status, r.reply, r.hard) for r in reports] == [
        (Kind.FAILED, "louisl@larry.slip.umd.edu", "4.0.0", 426, False),
        (Kind.FAILED, "bob@example.org", "5.1.1", 550, True),
        (Kind.DELAYED, "carol@example.org", "4.2.2", None, False),
    ]
    assert original_message_id(FAILURE) == "<01a243c7-5d48-726c-8bcc-9865ad00d738@mail.shop.example>"


def test_an_abuse_report_is_a_complaint_about_its_recipient() -> None:
    (report,) = parse(ABUSE)
    assert (report.kind, report.recipient) == (Kind.COMPLAINED, "user@example.com")
    assert original_message_id(ABUSE) == "<8787KJKJ3K4J3K4J3K4J3.mail@example.net>"
    assert parse(ABUSE.replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam")) == []


@pytest.mark.parametrize("raw", [b"", b"Subject: hello\r\n\r\nplain mail", b"\xff\xfe garbage", FAILURE[:200]])
def test_anything_else_is_no_report(raw: bytes) -> None:
    assert parse(raw) == []


def _signed(version: str, **fields: str) -> tuple[sns.SnsMessage, bytes]:
    """A message signed as SNS signs (its canonical form, as the SNS developer guide lists it),
    with a self-signed certificate standing for SNS's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.eu-west-1.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))  # fmt: skip
    body = {"Type": "Notification", "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:us-west-2:123456789012:MyTopic", "Subject": "My First Message",
            "Message": "Hello world!", "Timestamp": "2012-05-02T00:54:06.655Z", **fields}  # fmt: skip
    order = ("Message", "MessageId", "Subject", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
    text = "".join(f"{k}\n{body[k]}\n" for k in order if k in body).encode()
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303
    signature = base64.b64encode(key.sign(text, padding.PKCS1v15(), digest)).decode()
    cert_url = "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem"
    message = {**body, "SignatureVersion": version, "Signature": signature, "SigningCertURL": cert_url}
    return sns.parse(json.dumps(message).encode()), cert


@pytest.mark.parametrize("version", ["1", "2"])
def test_an_sns_message_verifies_under_its_certificate_and_not_once_changed(version: str) -> None:
    message, cert = _signed(version)
    sns.verify(message, cert)
    for changed in (msgspec.structs.replace(message, Message="Hello world?"),
                    msgspec.structs.replace(message, TopicArn="arn:aws:sns:us-west-2:123456789012:Other"),
                    msgspec.structs.replace(message, SignatureVersion="3")):  # fmt: skip
        with pytest.raises(sns.Unverified):
            sns.verify(changed, cert)
    _, other = _signed(version)
    with pytest.raises(sns.Unverified):
        sns.verify(message, other)


def test_only_snss_own_certificate_and_subscription_urls_are_trusted() -> None:
    assert sns.trusted_cert_url("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem")
    for url in (
        "http://sns.eu-west-1.amazonaws.com/x.pem", "https://sns.eu-west-1.amazonaws.com.evil.example/x.pem",
        "https://evil.example/sns.eu-west-1.amazonaws.com/x.pem", "https://s3.amazonaws.com/x.pem",
    ):  # fmt: skip
        assert not sns.trusted_cert_url(url), url
    assert sns.trusted_cert_url("http://127.0.0.1:8096/_sim/sns-cert.pem", ["http://127.0.0.1:8096/"])
    assert sns.trusted_sns_url("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=x")
    assert not sns.trusted_sns_url("https://sns.us-east-1.amazonaws.com.evil.example/?Action=ConfirmSubscription")


def test_ses_events_become_reports() -> None:
    """Samples after the SES Developer Guide's "Examples of event data"."""
    recipient = {"emailAddress": "recipient@example.com", "action": "failed", "status": "5.1.1",
                 "diagnosticCode": "smtp; 550 5.1.1 user unknown"}  # fmt: skip
    mail = {"messageId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"}
    details = {"bounceType": "Permanent", "bounceSubType": "General", "bouncedRecipients": [recipient]}
    bounce = {"eventType": "Bounce", "mail": mail, "bounce": details}
    ses_id, reports = from_ses(json.dumps(bounce))
    assert ses_id.startswith("EXAMPLE7c191be45")
    assert [(r.kind, r.recipient, r.status, r.hard) for r in reports] == [
        (Kind.FAILED, "recipient@example.com", "5.1.1", True)]  # fmt: skip
    soft = {**bounce, "bounce": {"bounceType": "Transient", "bouncedRecipients": [{"emailAddress": "r@example.com"}]}}
    assert [(r.kind, r.hard) for r in from_ses(json.dumps(soft))[1]] == [(Kind.DELAYED, False)]
    complaint = {"notificationType": "Complaint", "mail": {"messageId": "m1"},
                 "complaint": {"complainedRecipients": [{"emailAddress": "recipient@example.com"}]}}  # fmt: skip
    assert [(r.kind, r.recipient) for r in from_ses(json.dumps(complaint))[1]] == [
        (Kind.COMPLAINED, "recipient@example.com")]  # fmt: skip
    assert from_ses(json.dumps({"eventType": "Open", "mail": {"messageId": "m2"}})) == ("m2", [])
