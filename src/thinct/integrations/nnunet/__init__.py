"""nnU-Net v2 raw datasets: thick to thin, and predictions back onto the thick grids."""
