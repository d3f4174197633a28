"""The estimator's engine: the machinery behind :class:`~disyre_sk.DISYREDetector`.

It holds training (``training``: ``SliceBank`` and ``Trainer``; ``augment``: training
augmentation), inference (``inference``: ``Restorer``), the training monitor
(``monitor``: synthetic validation during fit, on the families of
``anomaly_families``), checksummed resumable checkpoints (``checkpoint``), the process
group under ``torchrun`` (``distributed``) and model files (``persist``).

Nothing here is public: names and modules may change without notice.
"""
