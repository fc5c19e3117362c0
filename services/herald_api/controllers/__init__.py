"""HTTP controllers, one per context; thin: decode, call the domain, encode."""
