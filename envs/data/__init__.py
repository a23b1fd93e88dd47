"""Benchmark data shipped with the library (gzipped plain-text tables, never pickles).

This folder is the default data root of the data-backed tasks: ``tfbind8/``, ``qm9str/``,
``rna/``, ``tf8mers/`` and ``phylo/``, each file gzipped (``name.gz``).  Sources and licences
are in ``PROVENANCE.md`` beside this file.  Read files through
:func:`gfn.envs.sequences.data.data_file` (which resolves ``data_dir`` > ``GFN_DATA_DIR`` > this
folder) and :func:`gfn.envs.sequences.data.open_text` (plain or gzipped, transparently).
"""
