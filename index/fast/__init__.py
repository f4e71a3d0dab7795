"""Whole-array (NumPy) evaluation of the common query shapes over Whoosh's own files, and
the decoded arrays kept on disk for the next process.
"""
