"""Serving searches: the search page and its JSON API, the resident server's announcement
and the client that uses it.
"""
