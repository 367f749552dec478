"""Deformable attention against a slow, obviously-correct loop."""

import torch

from napari_odise.model.deform_attn import MSDeformAttn, deformable_attention_core


def bilinear_zero_padded(img: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Sample img (D, H, W) at normalised (x, y) in [0, 1], align_corners=False, zeros outside."""
    d, h, w = img.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = int(torch.floor(torch.tensor(px))), int(torch.floor(torch.tensor(py)))
    out = torch.zeros(d, dtype=img.dtype)
    for yy in (y0, y0 + 1):
        for xx in (x0, x0 + 1):
            wx = 1 - abs(px - xx)
            wy = 1 - abs(py - yy)
            if 0 <= xx < w and 0 <= yy < h:
                out += wx * wy * img[:, yy, xx]
    return out


def slow_core(value, shapes, locations, weights):
    n, _, m, d = value.shape
    _, lq, _, levels, points, _ = locations.shape
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    out = torch.zeros(n, lq, m * d, dtype=value.dtype)
    for b in range(n):
        for q in range(lq):
            for head in range(m):
                acc = torch.zeros(d, dtype=value.dtype)
                for lvl, (h, w) in enumerate(shapes):
                    img = value[b, starts[lvl] : starts[lvl + 1], head].T.reshape(d, h, w)
                    for p in range(points):
                        x, y = locations[b, q, head, lvl, p].tolist()
                        acc += weights[b, q, head, lvl, p] * bilinear_zero_padded(img, x, y)
                out[b, q, head * d : (head + 1) * d] = acc
    return out


def test_core_matches_slow_loop():
    g = torch.Generator().manual_seed(0)
    shapes = [(3, 4), (2, 2)]
    n, m, d, lq, points = 2, 2, 3, 5, 3
    s = sum(h * w for h, w in shapes)
    value = torch.randn(n, s, m, d, generator=g, dtype=torch.float64)
    # locations include points outside [0, 1] to exercise zero padding
    locations = torch.rand(n, lq, m, len(shapes), points, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2
    weights = torch.rand(n, lq, m, len(shapes), points, generator=g, dtype=torch.float64)
    weights = weights / weights.sum(dim=(-1, -2), keepdim=True)
    fast = deformable_attention_core(value, shapes, locations, weights)
    torch.testing.assert_close(fast, slow_core(value, shapes, locations, weights))


def test_module_offsets_are_in_pixels_of_each_level():
    """A zero offset samples at the reference point; offsets are divided by (W, H) of each level."""
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=4, n_levels=1, n_heads=1, n_points=1).double()
    with torch.no_grad():
        attn.value_proj.weight.copy_(torch.eye(4))
        attn.output_proj.weight.copy_(torch.eye(4))
        attn.sampling_offsets.bias.copy_(torch.tensor([1.0, 0.0]))  # one pixel to the right
    h, w = 2, 3
    values = torch.arange(h * w * 4, dtype=torch.float64).view(1, h * w, 4)
    query = torch.zeros(1, 1, 4, dtype=torch.float64)
    # reference at the centre of pixel (row 0, col 0); +1 pixel in x lands on (row 0, col 1)
    ref = torch.tensor([[[[0.5 / w, 0.5 / h]]]], dtype=torch.float64)
    out = attn(query, ref, values, [(h, w)])
    torch.testing.assert_close(out[0, 0], values[0, 1])
