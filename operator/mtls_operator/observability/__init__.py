"""What the operator shows about itself: Prometheus metrics (their HTTP server included).

No kopf and no kubernetes client here; the controller and the handlers report into it.
"""
