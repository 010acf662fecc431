"""The `sprites` model kind: DTI-Sprites (Monnier et al., ICCV 2021) and its one-opaque-layer case
DTI-Clustering (NeurIPS 2020).

`model` (the `SpriteModel`: sprites, backgrounds, encoder, heads, rendering, selection calls),
`transforms` (the differentiable transformations), `compositor` (alpha compositing with
occlusion), `selection` (which sprite fills each layer), `encoder`, `heads`, `reassign`
(re-seeding), `seeding` (k-means++ starts), `training` and `record` (the model interface's
training hooks and decompose record).
"""

from pipeline.models.sprites.model import SpriteModel

__all__ = ["SpriteModel"]
