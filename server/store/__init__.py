"""MongoDB access: the connection, indexes and one repository per collection.
No other package builds queries; they call these repositories.

Layer 2 (I/O). May import: ids, errors, identity, expiring, secret_box, documents (the shapes of
the contact, run, step and timer documents) and pymongo.
"""
