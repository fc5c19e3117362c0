"""Billing: rate cards, usage exports and the commands the billing team runs."""
