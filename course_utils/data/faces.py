"""A generated face set: "10,000 pictures of 1,000 persons", offline and in seconds.

An identity is a fixed row of face attributes (face shape, skin, eyes, brows, nose, mouth, hair,
glasses, beard); each picture adds nuisances a recognition system must ignore (position, scale,
rotation, lighting, background, expression, an occluder, pixel noise). Every random number comes
from a seeded CPU ``torch.Generator``, and everything is computed in float64 and rounded to
multiples of 1/255, so the bytes are the same on every machine (a test compares a checksum).
At ``nuisance=1`` one-shot 1-nearest-neighbour on raw pixels is right about 17 % of the time
(200 held-out persons, chance 0.5 %); at ``nuisance=0`` always.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from course_utils._validate import check_labels, check_nonnegative, check_tensor, check_whole_number
from course_utils.data.batches import keyed_generator

#: Pictures rendered per vectorised step: bounds memory (512 was fastest on a 2-core CPU at 32 x 32).
CHUNK_SIZE = 512

_IDENTITY_STREAM, _PICTURE_STREAM, _NOISE_STREAM = 0, 1, 2

# Identity attributes: name -> (low, high) of a uniform draw, in column order of the random numbers.
# Lengths are in face units: the face ellipse is about 1 unit tall, centred at (0, 0).
_IDENTITY_RANGES = {
    "face_width": (0.36, 0.47), "face_height": (0.50, 0.60),
    "face_roundness": (1.8, 2.9),  # exponent of the face superellipse: 2 is an ellipse
    "chin_taper": (0.0, 0.35),  # how much the face narrows towards the chin
    "skin_tone": (0.0, 1.0),  # 0 light, 1 dark
    "skin_red": (-0.04, 0.04), "skin_green": (-0.04, 0.04), "skin_blue": (-0.04, 0.04),
    "eye_spacing": (0.15, 0.23),  # half the distance between the eye centres
    "eye_height": (-0.14, 0.0), "eye_width": (0.065, 0.10), "eye_opening": (0.035, 0.06),
    "iris_size": (0.55, 0.85),  # fraction of the eye opening
    "iris_colour": (0.0, 1.0),  # index into _IRIS_PALETTE
    "brow_gap": (0.06, 0.11), "brow_length": (0.07, 0.12),
    "brow_thickness": (0.015, 0.035), "brow_tilt": (-0.35, 0.35),
    "nose_length": (0.10, 0.20), "nose_width": (0.03, 0.065),
    "mouth_height": (0.24, 0.34), "mouth_width": (0.09, 0.17), "lip_thickness": (0.015, 0.035),
    "smile": (-0.8, 1.2), "lip_redness": (0.0, 1.0),
    "hair_colour": (0.0, 1.0),  # index into _HAIR_PALETTE
    "hair_red": (-0.05, 0.05), "hair_green": (-0.05, 0.05), "hair_blue": (-0.05, 0.05),
    "hair_line": (-0.58, -0.22),  # height of the hairline; near the top means bald
    "hair_tilt": (-0.2, 0.2),  # a side parting
    "hair_volume": (0.02, 0.13),
    "hair_length": (0.0, 1.0),  # from LONG_HAIR_FROM: long hair behind the head
    "glasses": (0.0, 1.0),  # below GLASSES_FRACTION: wears glasses
    "glasses_colour": (0.0, 1.0),  # index into _FRAME_PALETTE
    "glasses_size": (1.35, 1.8),  # lens radius as a multiple of the eye width
    "beard": (0.0, 1.0),  # below BEARD_FRACTION: a beard
    "moustache": (0.0, 1.0),  # below MOUSTACHE_FRACTION: a moustache
}
GLASSES_FRACTION, BEARD_FRACTION, MOUSTACHE_FRACTION, LONG_HAIR_FROM = 0.3, 0.15, 0.2, 0.55

# Per-picture nuisances at nuisance=1: name -> spread (times `nuisance`), the standard deviation
# of a normal draw (log-normal for scale, brightness, cast) unless its comment says otherwise.
_NUISANCE_SPREADS = {
    "shift_x": 0.04, "shift_y": 0.04,  # image units: the picture spans [-1, 1], 0.04 is 0.64 pixel at 32 x 32
    "log_scale": 0.04,
    "rotation": 0.06,  # radians (about 3.4 degrees)
    "log_brightness": 0.11,
    "light_strength": 0.22,  # largest light gradient (uniform draw): +-11 % from centre to edge
    "log_cast": 0.03,  # colour cast of the light, per channel
    "background": 0.5,  # blend of a random colour into plain grey (1: any colour)
    "background_gradient": 0.2,  # largest background gradient (uniform draw)
    "expression": 0.6,  # change of the smile
    "blink": 0.5,  # eyes close by |normal| * spread of their opening
    "brow_raise": 0.015,
    "gaze": 0.25,  # fraction of the eye width
    "occluder": 0.15,  # probability of an occluding rectangle
    "noise": 0.02,  # standard deviation of the (uniform) pixel noise
}
_PICTURE_COLUMNS = (
    "shift_x", "shift_y", "log_scale", "rotation", "log_brightness", "light_strength",
    "light_angle", "cast_red", "cast_green", "cast_blue", "background_red",
    "background_green", "background_blue", "background_angle", "background_gradient",
    "expression", "blink", "brow_raise", "gaze_x", "gaze_y", "occluder", "occluder_x",
    "occluder_y", "occluder_width", "occluder_height", "occluder_red", "occluder_green",
    "occluder_blue",
)  # fmt: skip

_LIGHT_SKIN, _DARK_SKIN = (0.98, 0.83, 0.70), (0.36, 0.22, 0.14)
_HAIR_PALETTE = (
    (0.07, 0.06, 0.05), (0.22, 0.13, 0.07), (0.42, 0.26, 0.13), (0.80, 0.65, 0.38),
    (0.58, 0.24, 0.10), (0.55, 0.55, 0.55), (0.88, 0.87, 0.84),
)  # fmt: skip
_IRIS_PALETTE = ((0.33, 0.19, 0.09), (0.12, 0.08, 0.06), (0.25, 0.45, 0.75), (0.28, 0.52, 0.32), (0.50, 0.55, 0.60))
_FRAME_PALETTE = ((0.05, 0.05, 0.05), (0.40, 0.22, 0.10), (0.78, 0.65, 0.25), (0.75, 0.75, 0.78), (0.70, 0.10, 0.12))
_EYE_WHITE = (0.96, 0.96, 0.94)
_GREY = 0.55
# Base position and size of the face in the picture (image units, picture spans [-1, 1]).
_FACE_CENTRE_Y, _FACE_SCALE = 0.12, 1.3


def make_synthetic_faces(
    n_identities: int = 1000, images_per_identity: int = 10, image_size: int = 32, seed: int = 0,
    device: str | torch.device | None = None, nuisance: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate pictures of made-up persons: the course's offline face set.

    The first n persons of a larger set are the same persons; the device does not change the pictures.

    Args:
        image_size: side of the square pictures in pixels (at least 16).
        seed: non-negative int; another seed gives other persons.
        nuisance: strength of the per-picture variation: 0 gives identical pictures of each
            person, 1 the calibrated difficulty, above 1 harder.
    Returns:
        images: (n_identities * images_per_identity, 3, image_size, image_size) float32 in
            [0, 1], grouped by person.
        labels: (n_identities * images_per_identity,) long identity ids.
    """
    check_whole_number(n_identities, "n_identities", 1)
    check_whole_number(images_per_identity, "images_per_identity", 1)
    check_whole_number(image_size, "image_size", 16)
    check_whole_number(seed, "seed", 0)
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
    """Accuracy of one-shot identification by 1-nearest-neighbour on raw pixels: the baseline to beat.

    Args:
        images: (N, ...) float pictures, e.g. (N, C, H, W).
        labels: (N,) integer identity ids; at least one identity needs two pictures.
        seed: chooses which picture of each identity is enrolled.
    """
    from course_utils.evaluation.retrieval import one_shot_identification  # evaluation imports data

    check_tensor(images, "images")
    if images.dim() < 2 or not images.is_floating_point():
        raise ValueError(
            f"images must be a floating tensor of shape (N, ...), got shape {tuple(images.shape)} "
            f"and dtype {images.dtype}. Use images.float()."
        )
    return one_shot_identification(images.flatten(1), labels, seed=seed).accuracy


def show_gallery(
    images: torch.Tensor, labels: torch.Tensor, n_identities: int = 6, per_identity: int = 8,
    identities: list[int] | None = None, title: str | None = None,
):
    """A matplotlib figure with one row per identity and its pictures in the columns.

    Args:
        images: (N, C, H, W) float pictures in [0, 1], C = 1 (grey) or 3 (colour).
        n_identities: without ``identities``, show the first this many identities met in ``labels``.
        per_identity: at most this many pictures per row.
        identities: the identity ids to show, one row each, in this order.
    """
    import matplotlib.pyplot as plt

    check_tensor(images, "images")
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"images must have shape (N, C, H, W) with C = 1 or 3, got {tuple(images.shape)}. "
            "Add a channel axis with images.unsqueeze(1) for (N, H, W) grey pictures."
        )
    labels = check_labels(labels, images.shape[0]).cpu()
    check_whole_number(per_identity, "per_identity", 1)
    if identities is None:
        check_whole_number(n_identities, "n_identities", 1)
        identities = list(dict.fromkeys(labels.tolist()))[:n_identities]  # in order of first appearance
    if not identities:
        raise ValueError("identities is empty; give at least one identity id (see labels.unique()).")
    missing = sorted(set(identities) - set(labels.tolist()))
    if missing:
        raise ValueError(f"identities {missing} do not occur in labels; choose ids from labels.unique().")
    figure, axes = plt.subplots(
        len(identities), per_identity, figsize=(0.9 * per_identity, 0.9 * len(identities)), squeeze=False
    )
    pictures = images.detach().cpu().float().clamp(0, 1).permute(0, 2, 3, 1)  # (N, H, W, C) for imshow
    for row, identity in enumerate(identities):
        own = (labels == identity).nonzero().flatten()[:per_identity]
        axes[row][0].set_ylabel(f"id {identity}", rotation=0, ha="right", va="center")
        for column, axis in enumerate(axes[row]):
            axis.set(xticks=[], yticks=[])
            if column < len(own):  # the colour map and its limits only apply to grey (H, W) pictures
                axis.imshow(pictures[own[column]].squeeze(2).numpy(), cmap="gray", vmin=0, vmax=1)
            else:
                axis.axis("off")
    for column, axis in enumerate(axes[-1]):
        axis.set_xlabel(f"pic {column + 1}")
    if title is not None:
        figure.suptitle(title)
    return figure


def _normal(uniforms: torch.Tensor) -> torch.Tensor:
    """Standard normal numbers from uniform ones in [0, 1), by the inverse normal CDF."""
    # torch.rand can return exactly 0, where the inverse CDF is -inf: keep one float step inside.
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
    picture = {name: _normal(raw[name]) * spread[name] for name in ("shift_x", "shift_y", "rotation", "expression")}
    picture["scale"] = _FACE_SCALE * torch.exp(_normal(raw["log_scale"]) * spread["log_scale"])
    picture["brightness"] = torch.exp(_normal(raw["log_brightness"]) * spread["log_brightness"])
    picture["light_strength"] = raw["light_strength"] * spread["light_strength"]
    picture["light_angle"] = raw["light_angle"] * 2 * math.pi
    casts = torch.stack([raw["cast_red"], raw["cast_green"], raw["cast_blue"]], dim=1)
    picture["light_colour"] = torch.exp(_normal(casts) * spread["log_cast"])
    # Background: a random colour, pulled towards a plain grey as the spread shrinks.
    colours = torch.stack([raw["background_red"], raw["background_green"], raw["background_blue"]], dim=1)
    colours = 0.6 * colours + 0.4 * colours.mean(dim=1, keepdim=True)  # less garish: 40 % towards grey
    picture["background"] = (_GREY + (colours - _GREY) * spread["background"]).clamp(0, 1)
    picture["background_angle"] = raw["background_angle"] * 2 * math.pi
    picture["background_gradient"] = raw["background_gradient"] * spread["background_gradient"]
    picture["eye_open"] = (1 - _normal(raw["blink"]).abs() * spread["blink"]).clamp(0.15, 1)
    picture["brow_raise"] = _normal(raw["brow_raise"]) * spread["brow_raise"]
    picture["gaze_x"] = _normal(raw["gaze_x"]) * spread["gaze"]
    picture["gaze_y"] = _normal(raw["gaze_y"]) * spread["gaze"]
    picture["has_occluder"] = (raw["occluder"] < min(spread["occluder"], 1.0)).double()
    picture["occluder_x"] = raw["occluder_x"] * 1.6 - 0.8
    picture["occluder_y"] = raw["occluder_y"] * 1.6 - 0.8
    picture["occluder_width"] = 0.15 + 0.3 * raw["occluder_width"]  # half-widths, image units
    picture["occluder_height"] = 0.15 + 0.3 * raw["occluder_height"]
    picture["occluder_colour"] = torch.stack([raw["occluder_red"], raw["occluder_green"], raw["occluder_blue"]], dim=1)
    return picture


def _soft(signed_distance: torch.Tensor, sharpness: torch.Tensor) -> torch.Tensor:
    """Coverage in [0, 1] from a signed distance (negative inside): an anti-aliased edge."""
    # Negate the small (n, 1, 1) sharpness, not the large distance: cheaper.
    return torch.sigmoid(signed_distance * -sharpness)


def _ellipse(u, v, centre_u, centre_v, half_width, half_height, exponent=2.0) -> torch.Tensor:
    """Signed distance (negative inside) to the superellipse |x|^e + |y|^e = 1, to first order.

    F = (|x|^e + |y|^e)^(1/e), x and y in half-axis units, is 1 on the edge; (F - 1) / |grad F|
    is the distance to the edge near it, also for thin shapes such as a blinking eye.
    """
    x = (u - centre_u).abs() * (1 / half_width)
    y = (v - centre_v).abs() * (1 / half_height)
    # |grad F| = F^(1-e) |(x^(e-1) / a, y^(e-1) / b)|. At the centre F = 0 and F^(1-e) is
    # infinite: flooring F at float eps keeps it finite, so the distance there is
    # -1 / 0 = -inf (deep inside, full coverage) instead of NaN.
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


class _Canvas(NamedTuple):
    """What every drawing step of a chunk of n pictures shares."""

    p: dict  # scalar attributes and nuisances, each (n, 1, 1) float64
    colour: dict  # colours, each (n, 3)
    x: torch.Tensor  # (1, 1, size) pixel centres in image units, the picture spans [-1, 1]
    y: torch.Tensor  # (1, size, 1), pointing down
    u: torch.Tensor  # (n, size, size) face coordinates: the picture's shift, rotation and scale undone
    v: torch.Tensor  # (n, size, size)
    side: torch.Tensor  # |u|: mirrored, so one formula draws both eyes, brows, ears and lenses
    sharpness: torch.Tensor  # (n, 1, 1) edge sharpness in face units


def _render(params: dict[str, torch.Tensor], noise: torch.Tensor, size: int) -> torch.Tensor:
    """Draw n pictures (n, 3, size, size) in multiples of 1/255.

    params: (n,) or (n, 3) float64 attributes and nuisances; noise: (n, 3, size, size) float64, same device.
    """
    n = noise.shape[0]
    coords = (torch.arange(size, device=noise.device, dtype=torch.float64) + 0.5) * (2 / size) - 1
    x, y = coords.view(1, 1, size), coords.view(1, size, 1)
    p = {name: value.view(n, 1, 1) for name, value in params.items() if value.dim() == 1}
    colour = {name: value for name, value in params.items() if value.dim() == 2}
    dx, dy = x - p["shift_x"], y - (p["shift_y"] + _FACE_CENTRE_Y)
    cos, sin = torch.cos(p["rotation"]), torch.sin(p["rotation"])
    u = (cos * dx + sin * dy) / p["scale"]
    v = (cos * dy - sin * dx) / p["scale"]
    # The sigmoid's scale is a quarter of a pixel, so an edge blurs over about one pixel (anti-aliasing).
    canvas = _Canvas(p, colour, x, y, u, v, u.abs(), 2 * size * p["scale"])
    image = _draw_head(canvas)
    _draw_eyes(image, canvas)
    _draw_nose_and_mouth(image, canvas)
    _draw_glasses(image, canvas)
    image = (_light_and_occlude(image, canvas, size) + noise).clamp(0, 1)
    return torch.round(image * 255) / 255  # 8-bit levels, as a photograph is stored


def _draw_head(c: _Canvas) -> torch.Tensor:
    """Background, long hair, neck, ears, face, hair on top and beard: (n, 3, size, size)."""
    p, u, v, side, sharpness = c.p, c.u, c.v, c.side, c.sharpness
    angle = p["background_angle"]
    ramp = 1 + p["background_gradient"] * (c.x * torch.cos(angle) + c.y * torch.sin(angle))
    image = c.colour["background"][:, :, None, None] * ramp.unsqueeze(1)
    width, height, volume = p["face_width"], p["face_height"], p["hair_volume"]
    skin, hair = c.colour["skin"], c.colour["hair"]
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
    return image


def _draw_eyes(image: torch.Tensor, c: _Canvas) -> None:
    """Eye whites, irises (following the gaze, hidden by the eyelids) and brows, in place."""
    p, v, side, sharpness = c.p, c.v, c.side, c.sharpness
    eye_u, eye_v, eye_width = p["eye_spacing"], p["eye_height"], p["eye_width"]
    eye = _soft(_ellipse(side, v, eye_u, eye_v, eye_width, p["eye_opening"] * p["eye_open"]), sharpness)
    _paint(image, torch.tensor(_EYE_WHITE, device=image.device, dtype=eye.dtype).expand(len(image), 3), eye)
    # In mirrored coordinates a gaze to the right moves the right iris out and the left one in.
    iris_u = eye_u + p["gaze_x"] * eye_width * torch.sign(c.u)
    iris_radius = p["iris_size"] * p["eye_opening"]
    iris_v = eye_v + p["gaze_y"] * p["eye_opening"]
    _paint(image, c.colour["iris"], eye * _soft(_ellipse(side, v, iris_u, iris_v, iris_radius, iris_radius), sharpness))
    # Brows: tilted thin ellipses above the eyes.
    brow_du, brow_dv = side - eye_u, v - (eye_v - p["brow_gap"] - p["brow_raise"])
    tilt_cos, tilt_sin = torch.cos(p["brow_tilt"]), torch.sin(p["brow_tilt"])
    along, across = tilt_cos * brow_du + tilt_sin * brow_dv, tilt_cos * brow_dv - tilt_sin * brow_du
    brow = _ellipse(along, across, 0.0, 0.0, p["brow_length"], p["brow_thickness"])
    _paint(image, c.colour["hair"] * 0.75, _soft(brow, sharpness))


def _draw_nose_and_mouth(image: torch.Tensor, c: _Canvas) -> None:
    """Nose shadow, moustache and mouth, in place."""
    p, u, v, side, sharpness = c.p, c.u, c.v, c.side, c.sharpness
    nose_centre = p["eye_height"] + 0.04 + p["nose_length"] / 2
    nose = _soft(_ellipse(u, v, 0.0, nose_centre, p["nose_width"], p["nose_length"] / 2), sharpness)
    _paint(image, c.colour["skin"] * 0.75, nose * 0.7)
    # Mouth: a band along a parabola whose bend is the smile (identity) plus the expression.
    mouth_v, mouth_width, lip = p["mouth_height"], p["mouth_width"], p["lip_thickness"]
    moustache = torch.maximum((v - (mouth_v - lip - 0.03)).abs() - 0.022, side - 1.1 * mouth_width)
    _paint(image, c.colour["hair"], _soft(moustache, sharpness) * p["has_moustache"])
    bend = (p["smile"] + p["expression"]) * 0.35 * mouth_width
    centre_line = mouth_v - bend * ((u / mouth_width) ** 2 - 0.5)
    mouth = torch.maximum((v - centre_line).abs() - lip, side - mouth_width)
    _paint(image, c.colour["lips"], _soft(mouth, sharpness))


def _draw_glasses(image: torch.Tensor, c: _Canvas) -> None:
    """Two rings, a bridge between them and the arms towards the ears, in place."""
    p, v, side = c.p, c.v, c.side
    eye_u, eye_v = p["eye_spacing"], p["eye_height"]
    lens = p["glasses_size"] * p["eye_width"]
    frame_v = eye_v - 0.2 * lens
    rings = ((side - eye_u) ** 2 + ((v - eye_v) / 0.8) ** 2).sqrt().sub(lens).abs() - 0.022
    bar = (v - frame_v).abs() - 0.018
    bridge = torch.maximum(bar, side - (eye_u - 0.9 * lens))
    arms = torch.maximum(bar, torch.maximum(eye_u + 0.9 * lens - side, side - p["face_width"]))
    glasses = torch.minimum(rings, torch.minimum(bridge, arms))
    _paint(image, c.colour["frame"], _soft(glasses, c.sharpness) * p["wears_glasses"])


def _light_and_occlude(image: torch.Tensor, c: _Canvas, size: int) -> torch.Tensor:
    """Brightness, colour cast and a light gradient, then an occluding rectangle anywhere."""
    p, x, y = c.p, c.x, c.y
    direction = x * torch.cos(p["light_angle"]) + y * torch.sin(p["light_angle"])
    light = p["brightness"] * (1 + 0.5 * p["light_strength"] * direction)
    image = image * light.unsqueeze(1) * c.colour["light_colour"][:, :, None, None]
    block = torch.maximum(
        (x - p["occluder_x"]).abs() - p["occluder_width"], (y - p["occluder_y"]).abs() - p["occluder_height"]
    )
    _paint(image, c.colour["occluder_colour"], _soft(block, torch.tensor(2.0 * size)) * p["has_occluder"])
    return image
