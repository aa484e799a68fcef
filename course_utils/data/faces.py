"""A generated face set, "10,000 pictures of 1,000 persons", offline in seconds: each person a row of face
attributes, each picture nuisances to ignore (pose, light, background, expression, an occluder, noise). Seeded CPU
generators, float64 arithmetic and pixels rounded to k / 255 give the same bytes on every machine."""
from __future__ import annotations

import math

import torch

from course_utils._validate import check_embeddings, check_labels, check_nonnegative, check_tensor, check_whole_number
from course_utils.data.batches import keyed_generator

CHUNK_SIZE = 512  #: pictures rendered per vectorised step: bounds memory (fastest on 2 CPU cores at 32 x 32)

_IDENTITY_STREAM, _PICTURE_STREAM, _NOISE_STREAM = 0, 1, 2

# Identity attributes: name -> (low, high) of a uniform draw, in column order of the random numbers. Lengths
# are in face units (the face ellipse is about 1 unit tall, centred at (0, 0)); face_roundness is the exponent
# of the face superellipse (2: an ellipse); eye_spacing is half the distance between the eyes; iris_size a
# fraction of the eye opening; *_colour an index into a palette; a hair_line near the top is bald; hair_tilt
# a side parting; glasses_size the lens radius in eye widths; glasses, beard, moustache: below *_FRACTION.
_IDENTITY_RANGES = {
    "face_width": (0.36, 0.47), "face_height": (0.50, 0.60), "face_roundness": (1.8, 2.9), "chin_taper": (0.0, 0.35),
    "skin_tone": (0.0, 1.0), "skin_red": (-0.04, 0.04), "skin_green": (-0.04, 0.04), "skin_blue": (-0.04, 0.04),
    "eye_spacing": (0.15, 0.23), "eye_height": (-0.14, 0.0), "eye_width": (0.065, 0.10), "eye_opening": (0.035, 0.06),
    "iris_size": (0.55, 0.85), "iris_colour": (0.0, 1.0), "brow_gap": (0.06, 0.11), "brow_length": (0.07, 0.12),
    "brow_thickness": (0.015, 0.035), "brow_tilt": (-0.35, 0.35), "nose_length": (0.10, 0.20),
    "nose_width": (0.03, 0.065), "mouth_height": (0.24, 0.34), "mouth_width": (0.09, 0.17),
    "lip_thickness": (0.015, 0.035), "smile": (-0.8, 1.2), "lip_redness": (0.0, 1.0), "hair_colour": (0.0, 1.0),
    "hair_red": (-0.05, 0.05), "hair_green": (-0.05, 0.05), "hair_blue": (-0.05, 0.05), "hair_line": (-0.58, -0.22),
    "hair_tilt": (-0.2, 0.2), "hair_volume": (0.02, 0.13), "hair_length": (0.0, 1.0), "glasses": (0.0, 1.0),
    "glasses_colour": (0.0, 1.0), "glasses_size": (1.35, 1.8), "beard": (0.0, 1.0), "moustache": (0.0, 1.0),
}
GLASSES_FRACTION, BEARD_FRACTION, MOUSTACHE_FRACTION, LONG_HAIR_FROM = 0.3, 0.15, 0.2, 0.55

# Per-picture nuisances at nuisance=1: the standard deviation of a normal draw (log-normal for scale, brightness
# and the light's colour cast), times `nuisance`. Shifts are in image units (the picture spans [-1, 1]), the
# rotation in radians; light_strength and background_gradient are the largest gradients of a uniform draw;
# background blends a random colour into grey (1: any colour); blink closes the eyes by |normal| * spread of
# their opening; occluder is the probability of an occluding rectangle; noise the deviation of uniform noise.
_NUISANCE_SPREADS = {
    "shift_x": 0.04, "shift_y": 0.04, "log_scale": 0.04, "rotation": 0.06, "log_brightness": 0.11,
    "light_strength": 0.22, "log_cast": 0.03, "background": 0.5, "background_gradient": 0.2, "expression": 0.6,
    "blink": 0.5, "brow_raise": 0.015, "gaze": 0.25, "occluder": 0.15, "noise": 0.02,
}
_PICTURE_COLUMNS = (
    "shift_x", "shift_y", "log_scale", "rotation", "log_brightness", "light_strength", "light_angle", "cast_red",
    "cast_green", "cast_blue", "background_red", "background_green", "background_blue", "background_angle",
    "background_gradient", "expression", "blink", "brow_raise", "gaze_x", "gaze_y", "occluder", "occluder_x",
    "occluder_y", "occluder_width", "occluder_height", "occluder_red", "occluder_green", "occluder_blue",
)

_LIGHT_SKIN, _DARK_SKIN = (0.98, 0.83, 0.70), (0.36, 0.22, 0.14)
_HAIR_PALETTE = ((0.07, 0.06, 0.05), (0.22, 0.13, 0.07), (0.42, 0.26, 0.13), (0.80, 0.65, 0.38),
                 (0.58, 0.24, 0.10), (0.55, 0.55, 0.55), (0.88, 0.87, 0.84))
_IRIS_PALETTE = ((0.33, 0.19, 0.09), (0.12, 0.08, 0.06), (0.25, 0.45, 0.75), (0.28, 0.52, 0.32), (0.50, 0.55, 0.60))
_FRAME_PALETTE = ((0.05, 0.05, 0.05), (0.40, 0.22, 0.10), (0.78, 0.65, 0.25), (0.75, 0.75, 0.78), (0.70, 0.10, 0.12))
_EYE_WHITE, _GREY = (0.96, 0.96, 0.94), 0.55
_FACE_CENTRE_Y, _FACE_SCALE = 0.12, 1.3  # the face's place and size in the picture (image units)


def make_synthetic_faces(n_identities: int = 1000, images_per_identity: int = 10, image_size: int = 32,
                         seed: int = 0, device: str | torch.device | None = None,
                         nuisance: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """images (N, 3, image_size, image_size) float32 in [0, 1] and labels (N,) long of made-up persons, grouped
    by person, N = n_identities * images_per_identity; the first persons of a larger set are the same. nuisance
    scales the per-picture variation: 0 gives identical pictures of a person, 1 the calibrated difficulty."""
    for value, name, least in ((n_identities, "n_identities", 1), (images_per_identity, "images_per_identity", 1),
                               (image_size, "image_size", 16), (seed, "seed", 0)):
        check_whole_number(value, name, least)
    nuisance = check_nonnegative(nuisance, "nuisance", "It scales the per-picture variation; 1 is the default.")
    device = torch.device("cpu") if device is None else torch.device(device)
    n_pictures = n_identities * images_per_identity
    labels = torch.arange(n_identities).repeat_interleave(images_per_identity)
    identities = _draw_identities(n_identities, seed)
    pictures = _draw_pictures(n_pictures, seed, nuisance)
    noise_generator = keyed_generator(seed, _NOISE_STREAM)
    images = torch.empty(n_pictures, 3, image_size, image_size, device=device)  # float32, exact k / 255
    for start in range(0, n_pictures, CHUNK_SIZE):
        rows = slice(start, min(start + CHUNK_SIZE, n_pictures))
        who = labels[rows]
        params = {name: value[who].to(device) for name, value in identities.items()}
        params.update({name: value[rows].to(device) for name, value in pictures.items()})
        # Uniform pixel noise: (u - 1/2) has standard deviation 1 / sqrt(12).
        uniforms = torch.rand(len(who), 3, image_size, image_size, generator=noise_generator).double()
        noise = (uniforms.to(device) - 0.5) * (math.sqrt(12) * _NUISANCE_SPREADS["noise"] * nuisance)
        images[rows] = _render(params, noise, image_size)
    return images, labels.to(device)


def pixel_one_shot_accuracy(images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> float:
    """One-shot identification accuracy of 1-nearest-neighbour on the raw (N, ...) float pictures: the baseline."""
    from course_utils.evaluation.retrieval import one_shot_identification  # evaluation imports data

    if check_tensor(images, "images").dim() < 2:
        raise ValueError(f"images must have shape (N, ...), one picture per row, got {tuple(images.shape)}.")
    return one_shot_identification(check_embeddings(images.flatten(1), "images"), labels, seed=seed).accuracy


def show_gallery(images: torch.Tensor, labels: torch.Tensor, n_identities: int = 6, per_identity: int = 8,
                 title: str | None = None):
    """A matplotlib figure of (N, C, H, W) pictures in [0, 1], C = 1 (grey) or 3: a row for each of the first
    n_identities met in labels, with its pictures in the columns."""
    import matplotlib.pyplot as plt

    if check_tensor(images, "images").dim() != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        raise ValueError(f"images must have shape (N, C, H, W) with N >= 1 and C = 1 or 3, got {tuple(images.shape)}."
                         " Add a channel axis with images.unsqueeze(1) for (N, H, W) grey pictures.")
    labels = check_labels(labels, images.shape[0]).cpu()
    check_whole_number(per_identity, "per_identity")
    rows = list(dict.fromkeys(labels.tolist()))[: check_whole_number(n_identities, "n_identities")]
    figure, axes = plt.subplots(len(rows), per_identity, figsize=(0.9 * per_identity, 0.9 * len(rows)), squeeze=False)
    pictures = images.detach().cpu().float().clamp(0, 1).permute(0, 2, 3, 1)  # (N, H, W, C) for imshow
    for row, identity in enumerate(rows):
        own = (labels == identity).nonzero().flatten()[:per_identity]
        axes[row][0].set_ylabel(f"id {identity}", rotation=0, ha="right", va="center")
        for column, axis in enumerate(axes[row]):
            axis.set(xticks=[], yticks=[], xlabel=f"pic {column + 1}" if row == len(rows) - 1 else "")
            if column < len(own):  # the colour map only applies to grey (H, W) pictures
                axis.imshow(pictures[own[column]].squeeze(2).numpy(), cmap="gray", vmin=0, vmax=1)
            else:
                axis.axis("off")
    figure.suptitle(title or "")
    return figure


def _normal(uniforms: torch.Tensor) -> torch.Tensor:
    """Standard normal numbers from uniform ones in [0, 1), kept one float step inside (0, 1)."""
    step = torch.finfo(uniforms.dtype).eps
    return torch.special.ndtri(uniforms.clamp(step, 1 - step))


def _palette_pick(uniforms: torch.Tensor, palette) -> torch.Tensor:
    """(n, 3) colours: entry floor(u * len(palette)) of the palette for each uniform u."""
    colours = torch.tensor(palette, dtype=uniforms.dtype)
    return colours[(uniforms * len(palette)).long().clamp(max=len(palette) - 1)]


def _draw_identities(n_identities: int, seed: int) -> dict[str, torch.Tensor]:
    """Face attributes of every identity: a dict of (n_identities,) or (n_identities, 3) CPU tensors."""
    # float32 draws (the stream the set was calibrated with), then float64 arithmetic.
    generator = keyed_generator(seed, _IDENTITY_STREAM)
    uniforms = torch.rand(n_identities, len(_IDENTITY_RANGES), generator=generator).double()
    raw = dict(zip(_IDENTITY_RANGES, uniforms.unbind(dim=1)))
    face = {name: low + (high - low) * raw[name] for name, (low, high) in _IDENTITY_RANGES.items()}
    tone = raw["skin_tone"].unsqueeze(1)
    jitter = torch.stack([face["skin_red"], face["skin_green"], face["skin_blue"]], dim=1)
    light, dark = torch.tensor(_LIGHT_SKIN, dtype=tone.dtype), torch.tensor(_DARK_SKIN, dtype=tone.dtype)
    face["skin"] = (light * (1 - tone) + dark * tone + jitter).clamp(0, 1)
    hair_jitter = torch.stack([face["hair_red"], face["hair_green"], face["hair_blue"]], dim=1)
    face["hair"] = (_palette_pick(raw["hair_colour"], _HAIR_PALETTE) + hair_jitter).clamp(0, 1)
    face["iris"] = _palette_pick(raw["iris_colour"], _IRIS_PALETTE)
    face["frame"] = _palette_pick(raw["glasses_colour"], _FRAME_PALETTE)
    red_lips = torch.tensor((0.72, 0.22, 0.25), dtype=tone.dtype)
    pale_lips = face["skin"] * torch.tensor((0.85, 0.6, 0.6), dtype=tone.dtype)
    redness = 0.6 * raw["lip_redness"].unsqueeze(1)
    face["lips"] = pale_lips * (1 - redness) + red_lips * redness
    face["wears_glasses"] = (raw["glasses"] < GLASSES_FRACTION).double()
    face["has_beard"] = (raw["beard"] < BEARD_FRACTION).double()
    face["has_moustache"] = (raw["moustache"] < MOUSTACHE_FRACTION).double()
    face["long_hair"] = (raw["hair_length"] >= LONG_HAIR_FROM).double()
    return face


def _draw_pictures(n_pictures: int, seed: int, nuisance: float) -> dict[str, torch.Tensor]:
    """Nuisances of every picture: a dict of (n_pictures,) or (n_pictures, 3) CPU tensors."""
    generator = keyed_generator(seed, _PICTURE_STREAM)
    uniforms = torch.rand(n_pictures, len(_PICTURE_COLUMNS), generator=generator).double()
    raw = dict(zip(_PICTURE_COLUMNS, uniforms.unbind(dim=1)))
    spread = {name: value * nuisance for name, value in _NUISANCE_SPREADS.items()}
    picture = {name: _normal(raw[name]) * spread[name] for name in ("shift_x", "shift_y", "rotation", "expression",
                                                                    "brow_raise")}
    picture["scale"] = _FACE_SCALE * torch.exp(_normal(raw["log_scale"]) * spread["log_scale"])
    picture["brightness"] = torch.exp(_normal(raw["log_brightness"]) * spread["log_brightness"])
    picture.update({name: raw[name] * spread[name] for name in ("light_strength", "background_gradient")})
    picture.update({name: raw[name] * 2 * math.pi for name in ("light_angle", "background_angle")})
    casts = torch.stack([raw["cast_red"], raw["cast_green"], raw["cast_blue"]], dim=1)
    picture["light_colour"] = torch.exp(_normal(casts) * spread["log_cast"])
    # Background: a random colour, 40 % towards its grey, pulled towards a plain grey as the spread shrinks.
    colours = torch.stack([raw["background_red"], raw["background_green"], raw["background_blue"]], dim=1)
    colours = 0.6 * colours + 0.4 * colours.mean(dim=1, keepdim=True)
    picture["background"] = (_GREY + (colours - _GREY) * spread["background"]).clamp(0, 1)
    picture["eye_open"] = (1 - _normal(raw["blink"]).abs() * spread["blink"]).clamp(0.15, 1)
    picture.update({name: _normal(raw[name]) * spread["gaze"] for name in ("gaze_x", "gaze_y")})
    picture["has_occluder"] = (raw["occluder"] < min(spread["occluder"], 1.0)).double()
    picture.update({name: raw[name] * 1.6 - 0.8 for name in ("occluder_x", "occluder_y")})  # image units
    picture.update({name: 0.15 + 0.3 * raw[name] for name in ("occluder_width", "occluder_height")})  # half-sizes
    picture["occluder_colour"] = torch.stack([raw["occluder_red"], raw["occluder_green"], raw["occluder_blue"]], dim=1)
    return picture


def _soft(signed_distance: torch.Tensor, sharpness: torch.Tensor) -> torch.Tensor:
    """Coverage in [0, 1] from a signed distance (negative inside): an anti-aliased edge."""
    return torch.sigmoid(signed_distance * -sharpness)  # negating the small sharpness is cheaper


def _ellipse(u, v, centre_u, centre_v, half_width, half_height, exponent=2.0) -> torch.Tensor:
    """Signed distance (negative inside) to the superellipse |x|^e + |y|^e = 1, to first order: (F - 1) / |grad F|
    with F = (|x|^e + |y|^e)^(1/e) in half-axis units, also right for thin shapes such as a blinking eye;
    |grad F| = F^(1-e) |(x^(e-1) / a, y^(e-1) / b)|, with F floored at eps: -inf at the centre, not NaN."""
    x = (u - centre_u).abs() * (1 / half_width)
    y = (v - centre_v).abs() * (1 / half_height)
    step = torch.finfo(x.dtype).eps
    if isinstance(exponent, float) and exponent == 2.0:  # the common ellipse, without pow
        level = torch.hypot(x, y)
        slope = torch.hypot(x * (1 / half_width), y * (1 / half_height)) / level.clamp_min(step)
    else:  # three pow calls: x^(e-1) = x^e / x and F^(1-e) = F / F^e
        x_e, y_e = x**exponent, y**exponent
        level_e = x_e + y_e
        level = level_e ** (1 / exponent)
        slope = (level.clamp_min(step) / level_e.clamp_min(step)) * torch.hypot(
            x_e / (x.clamp_min(step) * half_width), y_e / (y.clamp_min(step) * half_height)
        )
    return (level - 1) / slope


def _paint(image: torch.Tensor, colour: torch.Tensor, coverage: torch.Tensor) -> None:
    """Paint colour (n, 3) over image (n, 3, H, W) where coverage (n, H, W) is 1, in place."""
    image.lerp_(colour[:, :, None, None], coverage.unsqueeze(1))


def _render(params: dict[str, torch.Tensor], noise: torch.Tensor, size: int) -> torch.Tensor:
    """Draw n pictures (n, 3, size, size) in multiples of 1/255 from (n,) or (n, 3) float64 params and noise."""
    n = noise.shape[0]
    coords = (torch.arange(size, device=noise.device, dtype=torch.float64) + 0.5) * (2 / size) - 1
    x, y = coords.view(1, 1, size), coords.view(1, size, 1)  # pixel centres, image units, y pointing down
    p = {name: value.view(n, 1, 1) for name, value in params.items() if value.dim() == 1}
    colour = {name: value for name, value in params.items() if value.dim() == 2}
    ramp = 1 + p["background_gradient"] * (x * torch.cos(p["background_angle"]) + y * torch.sin(p["background_angle"]))
    image = colour["background"][:, :, None, None] * ramp.unsqueeze(1)
    # Face coordinates (u, v): the picture's shift, rotation and scale undone.
    dx, dy = x - p["shift_x"], y - (p["shift_y"] + _FACE_CENTRE_Y)
    cos, sin = torch.cos(p["rotation"]), torch.sin(p["rotation"])
    u = (cos * dx + sin * dy) / p["scale"]
    v = (cos * dy - sin * dx) / p["scale"]
    # The sigmoid's scale is a quarter of a pixel, so an edge blurs over about one pixel (anti-aliasing).
    sharpness = 2 * size * p["scale"]
    _draw_head(image, p, colour, u, v, sharpness)
    _draw_features(image, p, colour, u, v, sharpness)
    # Brightness, colour cast and a light gradient, then an occluding rectangle anywhere.
    direction = x * torch.cos(p["light_angle"]) + y * torch.sin(p["light_angle"])
    light = p["brightness"] * (1 + 0.5 * p["light_strength"] * direction)
    image = image * light.unsqueeze(1) * colour["light_colour"][:, :, None, None]
    block = torch.maximum(
        (x - p["occluder_x"]).abs() - p["occluder_width"], (y - p["occluder_y"]).abs() - p["occluder_height"]
    )
    _paint(image, colour["occluder_colour"], _soft(block, torch.tensor(2.0 * size)) * p["has_occluder"])
    return torch.round((image + noise).clamp(0, 1) * 255) / 255  # 8-bit levels, as a photograph is stored


def _draw_head(image: torch.Tensor, p: dict, colour: dict, u: torch.Tensor, v: torch.Tensor, sharpness) -> None:
    """Long hair, neck, ears, face, hair on top and beard, in place; side = |u| draws both halves at once."""
    side, width, height, volume = u.abs(), p["face_width"], p["face_height"], p["hair_volume"]
    skin, hair = colour["skin"], colour["hair"]
    # Long hair behind the head: a rounded crown and straight sides down past the chin.
    hair_width = width + volume + 0.05
    crown = _ellipse(u, v, 0.0, -0.1, hair_width, height + volume)
    hanging = torch.maximum(side - hair_width, torch.maximum(v - 0.8 * height, -0.1 - v))
    _paint(image, hair, _soft(torch.minimum(crown, hanging), sharpness) * p["long_hair"])
    _paint(image, skin * 0.82, _soft(torch.maximum(side - 0.5 * width, 0.3 - v), sharpness))  # neck
    ear_sd = _ellipse(side, v, width * 0.97, p["eye_height"] + 0.07, 0.17 * width, 0.2 * height)
    _paint(image, skin * 0.9, _soft(ear_sd, sharpness))
    # Face: a superellipse that narrows towards the chin.
    narrowing = 1 - p["chin_taper"] * (v / height).clamp(0, 1)
    face = _soft(_ellipse(u, v, 0.0, 0.0, width * narrowing, height, p["face_roundness"]), sharpness)
    _paint(image, skin, face)
    # Hair on top: a larger ellipse, cut off below a hairline that may tilt and arch.
    hairline = p["hair_line"] + p["hair_tilt"] * u + 0.1 * (u / width) ** 2
    top = _soft(_ellipse(u, v, 0.0, -0.04, width + volume, height + volume), sharpness)
    _paint(image, hair, top * _soft(v - hairline, sharpness))
    _paint(image, hair, face * _soft(p["mouth_height"] - 0.07 - v, sharpness) * (0.9 * p["has_beard"]))


def _draw_features(image: torch.Tensor, p: dict, colour: dict, u: torch.Tensor, v: torch.Tensor, sharpness) -> None:
    """Eyes (irises follow the gaze), brows, nose, moustache, mouth and glasses, in place."""
    side = u.abs()
    eye_u, eye_v, eye_width = p["eye_spacing"], p["eye_height"], p["eye_width"]
    eye = _soft(_ellipse(side, v, eye_u, eye_v, eye_width, p["eye_opening"] * p["eye_open"]), sharpness)
    _paint(image, torch.tensor(_EYE_WHITE, device=image.device, dtype=eye.dtype).expand(len(image), 3), eye)
    # In mirrored coordinates a gaze to the right moves the right iris out and the left one in.
    iris_u = eye_u + p["gaze_x"] * eye_width * torch.sign(u)
    iris_radius = p["iris_size"] * p["eye_opening"]
    iris_v = eye_v + p["gaze_y"] * p["eye_opening"]
    _paint(image, colour["iris"], eye * _soft(_ellipse(side, v, iris_u, iris_v, iris_radius, iris_radius), sharpness))
    # Brows: tilted thin ellipses above the eyes.
    brow_du, brow_dv = side - eye_u, v - (eye_v - p["brow_gap"] - p["brow_raise"])
    tilt_cos, tilt_sin = torch.cos(p["brow_tilt"]), torch.sin(p["brow_tilt"])
    along, across = tilt_cos * brow_du + tilt_sin * brow_dv, tilt_cos * brow_dv - tilt_sin * brow_du
    brow = _ellipse(along, across, 0.0, 0.0, p["brow_length"], p["brow_thickness"])
    _paint(image, colour["hair"] * 0.75, _soft(brow, sharpness))
    nose_centre = eye_v + 0.04 + p["nose_length"] / 2
    nose = _soft(_ellipse(u, v, 0.0, nose_centre, p["nose_width"], p["nose_length"] / 2), sharpness)
    _paint(image, colour["skin"] * 0.75, nose * 0.7)
    # Mouth: a band along a parabola whose bend is the smile (identity) plus the expression.
    mouth_v, mouth_width, lip = p["mouth_height"], p["mouth_width"], p["lip_thickness"]
    moustache = torch.maximum((v - (mouth_v - lip - 0.03)).abs() - 0.022, side - 1.1 * mouth_width)
    _paint(image, colour["hair"], _soft(moustache, sharpness) * p["has_moustache"])
    bend = (p["smile"] + p["expression"]) * 0.35 * mouth_width
    centre_line = mouth_v - bend * ((u / mouth_width) ** 2 - 0.5)
    _paint(image, colour["lips"], _soft(torch.maximum((v - centre_line).abs() - lip, side - mouth_width), sharpness))
    # Glasses: two rings, a bridge between them and the arms towards the ears.
    lens = p["glasses_size"] * eye_width
    rings = ((side - eye_u) ** 2 + ((v - eye_v) / 0.8) ** 2).sqrt().sub(lens).abs() - 0.022
    bar = (v - (eye_v - 0.2 * lens)).abs() - 0.018
    bridge = torch.maximum(bar, side - (eye_u - 0.9 * lens))
    arms = torch.maximum(bar, torch.maximum(eye_u + 0.9 * lens - side, side - p["face_width"]))
    glasses = torch.minimum(rings, torch.minimum(bridge, arms))
    _paint(image, colour["frame"], _soft(glasses, sharpness) * p["wears_glasses"])
