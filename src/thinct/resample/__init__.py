"""Classical operations between slice grids: interpolation baselines, thick-slice simulation,
thin images back onto thick grids, and data consistency with the thick slices. No torch."""
