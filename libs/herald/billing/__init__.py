"""Billing rules: periods, rate cards, the ledger's kinds, money, tax, invoices and their PDF. Pure:
the ledger and its queries are `herald.db`; the billing team's commands are `herald_cli.billing`."""
