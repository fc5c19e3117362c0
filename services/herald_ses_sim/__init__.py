"""A double of Amazon SES v2: moto's server behind a front that injects SES's faults (`herald ses-sim`)."""
