"""The static checks of a flow definition, one module per concern; ``server/machines/validator.py``
runs them all. Same layer and imports as ``server.machines``: pure, no I/O.
"""
