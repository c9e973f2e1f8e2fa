"""A model over a whole scan: the engine's options (importable without torch, for a fast CLI
start), the sliding window in named parts (tiling plans windows and tiles, blending turns
model slots into thin slices, the engine runs the model) and the process settings for fast
CPU inference.

Nothing is re-exported here, so that importing the torch-free options never loads the engine.
"""
