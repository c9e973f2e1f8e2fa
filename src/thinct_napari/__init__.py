"""napari plugin for thinct (npe2 manifest: napari.yaml): a reader and a writer that keep each
scan at its physical position, the example scan as sample data, the Thin slices panel (a
loaded scan and its labels through thinct's engine) and the Batch thin slices panel (a
folder of scans, as ``thinct upsample`` converts it)."""
