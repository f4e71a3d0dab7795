"""Query text to ranked, counted, decorated hits: parse, budget, expand, typos, collect,
decorate; :func:`index.search.run.search` runs them.
"""
