"""The teacher's methods (no torch import, so command-line parsers can offer them cheaply)."""

#: Garbin et al.'s steps 1-4, and the two baselines behind the same interface (one generator: ``run_teacher``).
METHODS = ("garbin", "image2stylegan", "projector")
#: What ``r2s-generate-targets --method`` offers: those, and Wang et al.'s dual-generator teacher (the search in
#: G_rendering, the target image from G_real: ``teacher.dual.run_dual_teacher``).
TARGET_METHODS = (*METHODS, "dual")
#: How the dual teacher searches G_rendering: Wang et al.'s projection, or Garbin et al.'s steps 1-4.
DUAL_SEARCHES = ("projector", "garbin")
#: How the flywheel's encoder code E(x) starts the teacher (``teacher.encoder_init``): in place of steps 1-2,
#: or as one more step-1 candidate.
INIT_MODES = ("replace", "candidate")
#: The projector's schedule from E(x) (``replace``): started near the answer (no lr ramp-up, no latent noise),
#: or step 3's own.
INIT_SCHEDULES = ("warm", "garbin")
#: The eq. 4 blend weights α of ``replace``'s candidates between its projection and E(x): the layer splits only
#: (4 candidates with the default 4 layer counts). Step 3's grid (1, 0.9, 0.8, 0.7) brings 4× the candidates to
#: the selection; on two sets of 16 unseen demo renders it selected the same codes (docs/BENCHMARKS.md, "The
#: flywheel"), a blend with α < 1 never winning.
INIT_ALPHAS = (1.0,)
#: The detectors of the landmark error of ``teacher.quality.LandmarkError``: dlib's 68 points, MTCNN's 5.
LANDMARK_DETECTORS = ("dlib", "mtcnn")
