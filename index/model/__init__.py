"""What is stored: the page item contract, the documents made from a page, the Whoosh
schema they are written with, and the page state a refresh reads back.
"""
