"""One writer per index: batched commits of whole pages, the writer process, the session
lock, the merge policy and memory probes.
"""
