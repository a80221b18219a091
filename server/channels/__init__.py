"""How messages leave and enter the product: the Channel protocol, the sandbox channel and
(later) the WhatsApp Cloud API channel with its throughput limiter and template lifecycle.

May import: store (repositories), clock, errors.
"""
