"""The model kinds, each in its own subpackage behind one interface (`pipeline.models.base`).

`registry` names the kinds; `fit` is the training loop every kind shares; `trained` builds,
saves and reloads a project's model; `state_io` writes weights and optimiser state as HDF5
datasets; `device` picks the device and CPU threads. `sprites/` is DTI-Sprites and its
one-opaque-layer case DTI-Clustering.

This package's `__init__` imports nothing, so that `pipeline.models.registry` stays light.
"""
