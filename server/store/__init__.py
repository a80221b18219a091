"""MongoDB access: the connection, indexes and one repository per collection.
No other package builds queries; they call these repositories.

May import: ids, errors (and pymongo).
"""
