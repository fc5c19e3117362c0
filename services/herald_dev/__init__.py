"""`herald dev`: the whole platform on embedded services, supervised (what `make run` starts)."""
