"""countingargs: the small library behind the executable report *Counting Arguments, Counted*.

A room for each idea (nothing is imported here, so ``import countingargs`` is instant; import
the module you need):

- :mod:`countingargs.build`       -- the rebuild runner, the CLI, provenance, ``verify``/``replot``
                                     (imports no torch)
- :mod:`countingargs.notebook`    -- :class:`~countingargs.notebook.Run`, what a notebook uses to
                                     write tables, figures and glued numbers
- :mod:`countingargs.report`      -- :class:`~countingargs.report.Findings` and the ledger rows
- :mod:`countingargs.stats`       -- intervals over seeds and the verdict helpers
- :mod:`countingargs.figures`     -- the figure style, ``@figure`` and ``save_figure``
- :mod:`countingargs.nets`        -- batched models, losses, the one trainer, seeding (shared)
- :mod:`countingargs.estimators`  -- LLC, local volume, probes (each validated on known answers)
- :mod:`countingargs.data`        -- digits splits, bit cubes
- :mod:`countingargs.chapters`    -- one package per chapter: ``experiment``, ``analysis``, ``plots``
"""

__version__ = "0.2.0"
