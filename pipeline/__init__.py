"""The Scrapy project: starts become requests, pages become items, item pipelines normalize
them and write them to the index (:mod:`index`)."""
