"""Masked Mineral Modeling: the masked-infilling network, its baselines, training, evaluation and export.

Torch is imported only inside the modules that need it (networks, training, export), never by
``backend``; the numpy parts (splits, masking, metrics, baselines) import without torch.
"""
