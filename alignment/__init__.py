"""FFHQ face alignment with saved transforms, landmark sources, and paste-back into the original image."""
from render2style.alignment.ffhq import AlignTransform, align_face, ffhq_quad, points_from_5, points_from_68
from render2style.alignment.paste import paste_back

__all__ = ["AlignTransform", "align_face", "ffhq_quad", "points_from_5", "points_from_68", "paste_back"]
