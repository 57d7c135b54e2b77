"""The build side of the book: the rebuild runner, its command line, provenance and checks.

Nothing in this package imports torch (``python -m countingargs list`` and ``params`` are
instant); notebooks never import it.

- :mod:`.sources`     -- source notebooks (MyST Markdown, read with jupytext) and their parameters
- :mod:`.values`      -- YAML 1.2 / JSON values (profiles.yml, ``-p``) and declared ranges
- :mod:`.profiles`    -- ``notebooks/profiles.yml`` and the validation of a request
- :mod:`.deps`        -- which library files a notebook imports (the input hash covers only those)
- :mod:`.provenance`  -- commit, package versions, hashes
- :mod:`.outputs`     -- where outputs go, their recorded hashes, the all-or-nothing commit
- :mod:`.lock`        -- one run at a time per book root
- :mod:`.worker`      -- runs one notebook under papermill in a child process
- :mod:`.supervisor`  -- starts workers, stops them on Ctrl-C, shows one line per running notebook
- :mod:`.runner`      -- the rebuild: validate, skip, execute, stage and commit
- :mod:`.check`       -- ``verify`` (recompute glue from saved tables) and ``replot``
- :mod:`.cli`         -- ``python -m countingargs ...``
"""


class RebuildError(Exception):
    """A problem with the request (profile, notebook, parameter) or a failed notebook."""
