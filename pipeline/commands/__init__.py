"""Project commands (``COMMANDS_MODULE``): ``search`` and a ``crawl`` that accepts
repeated ``-a start=...``."""
