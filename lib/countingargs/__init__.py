"""countingargs: the small library behind the executable report *Counting Arguments, Counted*.

One module per idea:

- :mod:`countingargs.run`      -- what a notebook uses to write results, figures and glued numbers
- :mod:`countingargs.figures`  -- the figure style and :func:`save_figure` (PNG + PDF, stable names)
- :mod:`countingargs.stats`    -- bootstrap confidence intervals and the verdict rule helpers
- :mod:`countingargs.batched`  -- many small MLPs as one batched tensor (trainers, samplers)
- :mod:`countingargs.data`     -- the data sets (scikit-learn's bundled ``load_digits``, bit cubes)
- :mod:`countingargs.distill`  -- distillation vs convergence (chapter 1)
- :mod:`countingargs.rebuild`  -- the papermill rebuild runner, with its CLI in :mod:`countingargs.cli`
"""

from .run import Run
from .figures import save_figure, use_style
from .stats import bootstrap_ci, mean_ci, Verdict, progress
from .batched import BatchedMLP, device

__all__ = ["Run", "save_figure", "use_style", "bootstrap_ci", "mean_ci", "Verdict",
           "progress", "BatchedMLP", "device"]
__version__ = "0.1.0"
