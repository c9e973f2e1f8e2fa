"""napari plugin for thinct: the widget, reader, writer and sample data come with its own issue."""
