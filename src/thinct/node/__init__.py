"""A DICOM node: receive thick CT series from a PACS or router, make thin ones and send them
on (`thinct serve`). Its parts, in the order a series meets them: `settings`, `receiver`
(C-ECHO and C-STORE into the `spool`), `database` (the job queue), `selection` (which series
are processed), `service` (the loop that processes and delivers), `delivery` (C-STORE and
STOW-RS) and `status`. See docs/dicom-node.md.

pynetdicom is an optional dependency (``pip install 'thinct[node]'``), imported only here.
"""
