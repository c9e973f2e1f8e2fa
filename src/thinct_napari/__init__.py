"""napari plugin for thinct (npe2 manifest: napari.yaml): a reader and a writer that keep each
scan at its physical position, and the example scan as sample data. The super-resolution
widget and the batch panel come with the rest of the plugin issue."""
