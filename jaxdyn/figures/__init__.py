"""Reproductions of the papers' figures, registered with `jaxdyn reproduce`."""
