"""Issue 30 #4: what stops every thread of a server process stays short.

A full garbage collection holds the interpreter lock for as long as it walks the
process's tracked objects: every search thread and the event loop (a cheap query's
answer included) wait for it. The server freezes what it is made of when it starts
(modules, the app), and the caches keep what the collector need not walk."""

from __future__ import annotations

import gc

import uvicorn

import index.serve.web as web
from index.search import expand


def test_the_server_keeps_what_it_starts_with_out_of_every_collection(tmp_path):
    gc.unfreeze()
    try:
        web.create_app(tmp_path)  # an empty folder: the app is made all the same
        # Modules, classes, functions, the app: tens of thousands (about 40,000 here).
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


def test_a_cached_automaton_is_not_walked_by_the_collector():
    # The review's 30-letter random words: large automata, all of them cached.
    dfa = expand._dfa("rzjtatugibmmuecoaqhacftqmulrcm", 2, 1)
    gc.collect()
    states = dfa.transitions
    assert len(states) > 200
    # Every state is an int and its moves a dict of letters to ints: nothing per state
    # for a collection to walk (to_dfa's states are frozensets of tuples, all tracked).
    assert all(type(state) is int for state in states)
    assert not any(gc.is_tracked(moves) for moves in states.values())
    assert all(type(state) is int for state in dfa.final_states)


def test_no_access_log_line_per_request():
    # A line per keystroke, written on the event loop, is a wait for the interpreter lock.
    assert uvicorn.Config(web.create_app, **web.UVICORN_OPTIONS).access_log is False
