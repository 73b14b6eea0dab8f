r"""The general detector: one model for the face photos of every shared dataset at once.

  python main.py --config configs/general.py --workdir runs/general
  python main.py --config configs/general.py:pseudo --workdir runs/general_pseudo
  python main.py --config configs/general.py:faces --workdir runs/general_faces

From the repository root with ../shared beside it (about 22 minutes on 2 cores). On
full downloads, point each source (and with it its re-saved copy) at one:

  python main.py --config configs/general.py --workdir runs/general \
      --config.data.mixture.faces140k.manual_dir=/data/140k \
      --config.data.mixture.ciplab.manual_dir=/data/ciplab \
      --config.data.mixture.lfw_faceswap.manual_dir=/data/lfw_faceswap

Trains on the 140k subset, ciplab_256 and lfw_faceswap, each beside a copy whose every
file is re-saved once smaller and at a lower JPEG quality, sampled alike: the
detector's residual features (co-occurrences in RGB and in Y, Cb, Cr; DCT residuals on
each JPEG's grid) of the whole image and its central half, cached per source, and a
linear head with logits per (source, class). The checkpoint and the threshold are chosen
on each source's validation tenth, the threshold calling at most 15% of each source's
real images fake. `--folds 5` cross-validates ciplab, `--leave_out` leaves each source
out, `--pseudo_only` trains on no real fake (`:self_blend_only`: its fakes all
self-blends; docs/training.md). It is the packaged model
(docs/model_card.md); `:pseudo` adds pseudo-fake copies; `:faces` trains on face crops
with enlarged copies too, for faces in larger photos. Figures: docs/results.md.
"""

import ml_collections

from configs import cooccurrence

SHARED = "../shared/data"
# config.data.resave of each source's re-saved copy: a copy of the kind users pass on,
# whose range holds the robustness report's halved_q90 without centring on it.
RESAVE = {"scale": (0.35, 0.85), "quality": (60, 95), "seed": 0}
# ":faces"' third copy of each source: enlarged and re-saved, as a face image pasted at
# 18-45% of a 700-1600 px photo is (tools/face_check.py's canvases).
ENLARGED = {"scale": (1.0, 2.8), "quality": (80, 95), "seed": 0}
# ":faces"' crop side, as a multiple of FFHQ's: a crop of a face image that fills its file
# (ciplab, 140k) stays inside it, as it then does inside a photo (docs/results.md).
FACES_MARGIN = 0.75


# Arguments (`configs/general.py:ARG`): "pseudo" adds beside each source a copy whose
# fakes are pseudo-fakes (data/artifacts.py). With no real fake at all: --pseudo_only,
# which makes them of every kind, or of self-blends alone with ":self_blend_only".
# "faces" crops every image to its face and adds an enlarged copy of each source.
VARIANTS = ("", "pseudo", "self_blend_only", "faces")
PSEUDO_FAKES = {"kinds": ("nearest", "bilinear", "transposed", "pixel_shuffle", "decoder",
                          "self_blend"), "weights": (), "seed": 0}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  if arg not in VARIANTS:
    raise ValueError(f"configs/general.py takes one of {VARIANTS[1:]} or nothing, got {arg!r}")
  config = cooccurrence.get_config()
  # Every choice below was made on the sources' validation tenths or on 5 folds of the
  # training images; the figures are in docs/results.md, "The general detector".
  config.batch_size = 64
  config.num_epochs = 20
  config.learning_rate = 3e-3
  config.lr_schedule = "cosine"
  config.weight_decay = 0.1
  config.model.cross_band = True
  # Y, Cb and Cr as well as R, G and B: higher on two sources in 5 folds.
  config.model.color_spaces = ("rgb", "ycbcr")
  # The whole image beside its central half (the face): a pasted face differs from
  # the photo around it.
  config.model.regions = (1.0, 0.5)
  config.model.hidden = ()
  # DCT residuals on each image's own JPEG grid and tables where decoding keeps them
  # (lfw_faceswap at 224 px); the resized ones are read without a grid at this quality.
  config.model.jpeg_features = ("dctr",)
  config.model.jpeg_quality = 90
  # One input size for every source, 256 px ones resized: native crops, and face crops
  # (config.data.face_crop), validated lower.
  config.data.image_size = 224
  config.data.validation_fraction = 0.1
  sources = {"faces140k": ("real_vs_fake_140k", "real_vs_fake_140k"),
             "ciplab": ("ciplab", "ciplab_256"),
             "lfw_faceswap": ("image_folder", "lfw_faceswap")}
  copies = {"resaved": RESAVE, **({"enlarged": ENLARGED} if arg == "faces" else {})}
  for source, (dataset, folder) in sources.items():
    config.data.mixture[source] = {"name": dataset, "weight": 1.0,
                                   "manual_dir": f"{SHARED}/{folder}"}
    # The same files re-saved, as a source of their own whose manual_dir follows the
    # clean one's: re-saved images get their own line, and the clean line moves little.
    clean = config.data.mixture[source]
    for copy, resave in copies.items():
      config.data.mixture[f"{source}_{copy}"] = {
          "name": dataset, "weight": 1.0, "manual_dir": clean.get_ref("manual_dir"),
          "resave": resave}
  if arg == "faces":
    # Crops narrow the gap between a face in a photo and the face image alone.
    config.data.face_crop.enabled = True
    config.data.face_crop.margin = FACES_MARGIN
  for source in list(config.data.mixture) if arg == "self_blend_only" else ():
    config.data.mixture[source].pseudo_fakes = {**PSEUDO_FAKES, "kinds": ("self_blend",)}
  for source in list(config.data.mixture) if arg == "pseudo" else ():
    entry = config.data.mixture[source]
    config.data.mixture[f"{source}_pseudo"] = {
        "name": entry.name, "weight": entry.weight,
        "manual_dir": entry.get_ref("manual_dir"), "pseudo_fakes": PSEUDO_FAKES,
        **({"resave": RESAVE} if "resave" in entry else {})}
  # A logit pair per source: each draws its own line between real and fake.
  config.model.num_sources = len(config.data.mixture)
  # A detector for any photo must seldom call a real one fake (docs/results.md gives
  # the clean accuracy this costs on each source).
  config.max_real_fpr = 0.15
  return config
