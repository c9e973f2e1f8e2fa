"""napari plugin for thinct (widget, reader, writer and sample data arrive with the napari issue)."""
