"""The build side of the book: the rebuild runner, its command line, provenance and checks.

Nothing in this package imports torch (``python -m countingargs list`` and ``params`` are
instant); notebooks never import it.

- :mod:`.sources`     -- source notebooks (MyST Markdown, read with jupytext) and their parameters
- :mod:`.profiles`    -- ``notebooks/profiles.yml`` and the validation of a request
- :mod:`.deps`        -- which library files a notebook imports (the input hash covers only those)
- :mod:`.provenance`  -- commit, package versions, hashes
- :mod:`.runner`      -- execute notebooks with papermill and move their outputs into place
- :mod:`.check`       -- ``verify`` (recompute glue from saved tables) and ``replot``
- :mod:`.cli`         -- ``python -m countingargs ...``
"""


class RebuildError(Exception):
    """A problem with the request (profile, notebook, parameter) or a failed notebook."""
