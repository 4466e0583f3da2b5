"""The subcommands beside the main run: ``tag``, ``models`` and ``remix``, with the options they share
with it. (``eval`` and ``web`` keep theirs in their own packages.)"""
