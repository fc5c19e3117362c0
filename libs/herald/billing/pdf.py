"""An invoice as a PDF a person would send (fpdf2).

The PDF core font (Helvetica) covers Latin-1 only: a character outside it prints as `?`, which a
legal name in, say, Polish would show. The fix is a Unicode TrueType font shipped with Herald
(`FPDF.add_font`); none is shipped yet, and the CSV carries every name exactly.
"""

from __future__ import annotations

from decimal import Decimal

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from herald.billing.invoices import Invoice, InvoiceStatus


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def _money(amount: Decimal, currency: str) -> str:
    return f"{amount:,} {currency}"


def render(invoice: Invoice) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_title(_latin1(f"Invoice {invoice.number}"))
    pdf.set_creation_date(invoice.as_of)  # the same invoice renders to the same bytes
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 18)
    title = "INVOICE" if invoice.status is InvoiceStatus.FINAL else "DRAFT INVOICE (period open)"
    pdf.cell(0, 10, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", "", 10)
    seller, customer = invoice.seller, invoice.customer
    for text in (
        f"Invoice number: {invoice.number}",
        f"Billing period: {invoice.period_start:%Y-%m-%d} to {invoice.period_end:%Y-%m-%d} (UTC, end exclusive)",
        f"Figures as of: {invoice.as_of:%Y-%m-%d %H:%M:%S} UTC",
        "",
        f"From: {seller.legal_name}, {seller.address or ''} {seller.country}, VAT {seller.vat_id or '-'}",
        f"To: {customer.legal_name}, {customer.country}"
        + (f", VAT {customer.vat_id}" if customer.vat_id else "")
        + (f", customer {customer.external_customer_id}" if customer.external_customer_id else ""),
        "",
    ):
        pdf.cell(0, 6, _latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    widths = (92, 22, 30, 36)
    pdf.set_font("Helvetica", "B", 9)
    for width, head in zip(widths, ("Description", "Quantity", "Unit price", "Amount"), strict=True):
        pdf.cell(width, 7, head, border=1, align="L" if head == "Description" else "R")
    pdf.ln()
    pdf.set_font("Helvetica", "", 9)
    for line in invoice.lines:
        unit = "" if line.unit_price_micros is None else f"{Decimal(line.unit_price_micros) / 1_000_000:f}"
        cells = (_latin1(line.description)[:60], f"{line.quantity:,}", unit, _money(line.amount, invoice.currency))
        for width, (index, text) in zip(widths, enumerate(cells), strict=True):
            pdf.cell(width, 6, text, border=1, align="L" if index == 0 else "R")
        pdf.ln()
    pdf.ln(2)
    pdf.set_font("Helvetica", "", 10)
    tax = invoice.tax
    for label, amount in (
        ("Subtotal", invoice.subtotal),
        (f"VAT {tax.rate_percent}%", invoice.tax_amount),
        ("Total", invoice.total),
    ):
        if label == "Total":
            pdf.set_font("Helvetica", "B", 11)
        pdf.cell(sum(widths[:3]), 7, label, align="R")
        pdf.cell(widths[3], 7, _money(amount, invoice.currency), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if tax.note:
        pdf.set_font("Helvetica", "I", 9)
        pdf.multi_cell(0, 5, _latin1(tax.note), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", "", 8)
    rule = (
        "Amounts: each line rounded half-to-even to the currency's minor unit; subtotal is the sum of the"
        " rounded lines; VAT is the subtotal times the rate, rounded the same way."
    )
    pdf.multi_cell(0, 4, rule, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())
