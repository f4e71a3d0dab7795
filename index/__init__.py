"""Whoosh index: schema, writer and search. No Scrapy imports anywhere in this package,
so ``python -m index search`` starts fast."""
