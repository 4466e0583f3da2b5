"""``autosep web``: a browser app (Gradio) to upload or record a recording, see the sources autosep finds, edit
them, separate, listen to every stem with its mel spectrogram, download them, and remix them.

An optional extra (``pip install "autosep[web]"``): Gradio is imported only by ``autosep web`` and
:func:`autosep.web.app.build_app`; :mod:`autosep.web.engine` (the work, per session) needs no Gradio.
"""
