"""Data that ships inside packages or is made here (no downloads).

- :mod:`.digits`  -- scikit-learn's bundled ``load_digits``: a fixed split, stratified subsets
- :mod:`.cube`    -- the Boolean cube ``{0,1}^n`` in the book's one bit order
"""
