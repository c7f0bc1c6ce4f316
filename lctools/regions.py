"""Linear regions in two dimensions: exact partitions and rasterised pattern maps.

Notation (book/notation.md): hidden pre-activations ``z_l = W_l sigma(z_{l-1}) + b_l``
(``l = 1..L``, ``z_0 = x``), output ``N(x) = W_{L+1} sigma(z_L) + b_{L+1}``.  The zero sets
``{x : z_{l,i}(x) = 0}`` of the hidden neurons cut input space into *activation regions*;
on each region the activation pattern ``(z_{l,i}(x) > 0)_{l,i}`` is constant and ``N`` is
affine.  Their union contains the nonlinear locus ``B_theta``.

* :func:`partition2d` -- the exact partition of a box ``K`` of a 2D input space
  (computed by `regioncam <https://github.com/twanvl/regioncam>`_, exact up to float32).
* :func:`partition_through_points` -- the same on the 2D plane through three inputs of
  any dimension (e.g. three MNIST images).
* :func:`pattern_map` -- a raster of activation patterns computed with torch on the model's
  device, a cheap picture (and an independent check) of the same partition.

The exact partition gives ``vol_1(zero sets ∩ K) / vol_2(K)``, the quantity that local
complexity estimates for ``p`` uniform on ``K`` (``boundary_length / area``).
"""
from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np
import torch

from ._jacobian import hidden_pass
from ._network import Network, check_inputs, chunks, parse_network

__all__ = [
    "Partition", "PatternMap", "partition2d", "partition_through_points", "pattern_map", "pattern_colors",
    "activation_patterns", "arrangement_bound", "serra_bound",
]


def _np32(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _check_bounds(bounds) -> tuple:
    try:
        x0, x1, y0, y1 = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be four numbers (x0, x1, y0, y1), got {bounds!r}.") from None
    if not np.all(np.isfinite([x0, x1, y0, y1])) or not (x0 < x1 and y0 < y1):
        raise ValueError(f"bounds (x0, x1, y0, y1) need finite values with x0 < x1 and y0 < y1, got {bounds!r}.")
    return x0, x1, y0, y1


def _check_2d(net: Network, what: str) -> None:
    if net.in_dim != 2:
        raise ValueError(
            f"{what} needs a network with 2 inputs (n_0 = 2), this one has n_0 = {net.in_dim}; "
            "use partition_through_points for a 2D slice of a higher-dimensional input space."
        )


def pattern_colors(patterns: np.ndarray, cmap="turbo", lighten: float = 0.45) -> np.ndarray:
    """RGBA colour per activation pattern (rows of a bool array): a stable hash of the pattern
    mapped through ``cmap`` and mixed with white, so equal patterns get equal colours in every
    figure (exact partitions and raster maps alike).

    Example
    -------
    >>> import numpy as np
    >>> pattern_colors(np.array([[True, False], [True, False]])).shape
    (2, 4)
    """
    import matplotlib

    cm = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    packed = np.packbits(np.asarray(patterns, dtype=bool), axis=1)
    h = np.array([int.from_bytes(hashlib.blake2b(r.tobytes(), digest_size=8).digest(), "little") for r in packed])
    rgba = cm((h / 2.0**64).astype(float))
    rgba[:, :3] = (1 - lighten) * rgba[:, :3] + lighten
    return rgba


@dataclass
class Partition:
    """The exact partition of a 2D domain ``K`` into activation regions.

    ``vertices`` are 2D coordinates (input coordinates ``x`` for :func:`partition2d`, plane
    coordinates for :func:`partition_through_points`); ``edges`` are pairs of vertex ids with
    ``edge_layer`` = the hidden layer ``l`` whose neuron zero set ``{z_{l,i} = 0}`` made the
    edge (0 for the border of ``K``) and ``edge_lengths`` their lengths in input space;
    ``faces`` are the regions as cyclic vertex-id arrays; ``patterns[f]`` is the activation
    pattern ``z_{l,i} > 0`` (neurons of layer 1 first) and ``outputs[f]`` is ``N`` at the
    centroid of face ``f``.
    """

    vertices: np.ndarray
    edges: np.ndarray
    edge_layer: np.ndarray
    edge_lengths: np.ndarray
    faces: List[np.ndarray]
    face_areas: np.ndarray
    centroids: np.ndarray
    patterns: np.ndarray
    outputs: np.ndarray
    depth: int
    bounds: tuple
    area: float
    plane_weight: Optional[np.ndarray] = None  # (2, d): x = u @ plane_weight + plane_bias
    plane_bias: Optional[np.ndarray] = None
    points: Optional[np.ndarray] = field(default=None, repr=False)  # (3, 2) plane coords
    labels: Optional[Sequence[str]] = None

    def __repr__(self) -> str:
        return (f"Partition(num_regions={self.num_regions}, boundary_length={self.boundary_length:.6g}, "
                f"area={self.area:.6g}, depth={self.depth}, bounds={self.bounds})")

    @property
    def num_regions(self) -> int:
        """Number of activation regions (faces) in ``K``."""
        return len(self.faces)

    @property
    def boundary_length(self) -> float:
        """``vol_1( U_{l,i} {z_{l,i} = 0} ∩ K )``: total length of the region boundaries inside
        ``K`` (border of ``K`` excluded), measured in input space."""
        return float(self.edge_lengths[self.edge_layer > 0].sum())

    @property
    def boundary_length_per_layer(self) -> np.ndarray:
        """``(L,)`` array: the boundary length split by the hidden layer whose zero set made each edge."""
        return np.bincount(self.edge_layer, weights=self.edge_lengths, minlength=self.depth + 1)[1:]

    def locus_segments(self) -> np.ndarray:
        """The edges made by neuron zero sets (border of ``K`` left out), shape ``(E, 2, 2)``."""
        return self.vertices[self.edges[self.edge_layer > 0]]

    def distance_to_locus(self, points, chunk: int = 1024) -> np.ndarray:
        """Euclidean distance (in partition coordinates) from each point to the nearest region
        boundary, exactly: the minimum over the locus segments of the point-segment distance."""
        seg = self.locus_segments()
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if len(seg) == 0:
            return np.full(len(pts), np.inf)
        a, ab = seg[:, 0], seg[:, 1] - seg[:, 0]
        out = []
        for p in np.array_split(pts, max(1, len(pts) // chunk)):
            t = np.clip(((p[:, None] - a) * ab).sum(-1) / (ab**2).sum(-1), 0.0, 1.0)
            out.append(np.linalg.norm(p[:, None] - a - t[..., None] * ab, axis=-1).min(axis=1))
        return np.concatenate(out)

    def to_input(self, coords) -> np.ndarray:
        """Map 2D partition coordinates to input space (the identity for :func:`partition2d`)."""
        coords = np.asarray(coords, dtype=np.float64)
        return coords if self.plane_weight is None else coords @ self.plane_weight + self.plane_bias

    def plot(self, ax=None, color_by: Optional[str] = "pattern", show_locus: bool = True,
             cmap=None, linewidth: float = 0.7, legend: bool = True):
        """Draw the partition with matplotlib and return the Axes.

        Faces are filled by ``color_by``: ``"pattern"`` (a stable hash of the activation
        pattern, see :func:`pattern_colors`), ``"output"`` (first output of ``N`` at the face
        centroid) or ``None`` (transparent, to overlay the locus on another plot).  With
        ``show_locus`` the edges are drawn, coloured by
        the hidden layer that made them; points of :func:`partition_through_points` are marked.
        """
        import matplotlib.pyplot as plt
        from matplotlib.collections import LineCollection, PolyCollection

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 5))
        polys = [self.vertices[f] for f in self.faces]
        if color_by == "pattern":
            colors = pattern_colors(self.patterns, cmap or "turbo")
        elif color_by == "output":
            import matplotlib

            out = self.outputs[:, 0]
            norm = matplotlib.colors.Normalize(out.min(), out.max())
            colors = matplotlib.colormaps[cmap or "viridis"](norm(out))
        elif color_by is None:
            colors = "none"  # transparent: the partition can be drawn over a heat map
        else:
            raise ValueError(f"color_by must be 'pattern', 'output' or None, got {color_by!r}.")
        ax.add_collection(PolyCollection(polys, facecolors=colors, edgecolors="none"))
        segs = self.vertices[self.edges]
        ax.add_collection(LineCollection(segs[self.edge_layer == 0], colors="black", linewidths=1.0))
        if show_locus:
            layer_colors = plt.get_cmap("tab10")
            for l in range(1, self.depth + 1):
                sel = self.edge_layer == l
                if sel.any():
                    ax.add_collection(LineCollection(segs[sel], colors=[layer_colors((l - 1) % 10)],
                                                     linewidths=linewidth, label=f"layer {l}"))
            if legend and self.depth > 0 and (self.edge_layer > 0).any():
                ax.legend(loc="upper right", fontsize="small", framealpha=0.8)
        if self.points is not None:
            ax.scatter(*self.points.T, s=40, c="black", edgecolors="white", zorder=5)
            for (u, v), lab in zip(self.points, self.labels):
                ax.annotate(lab, (u, v), xytext=(4, 4), textcoords="offset points", fontsize=11,
                            weight="bold", zorder=6)
        x0, x1, y0, y1 = self.bounds
        names = ("$x_1$", "$x_2$") if self.plane_weight is None else ("plane coordinate 1", "plane coordinate 2")
        ax.set(xlim=(x0, x1), ylim=(y0, y1), aspect="equal", xlabel=names[0], ylabel=names[1])
        ax.set_title(f"{self.num_regions} regions, boundary length {self.boundary_length:.3g}", fontsize="medium")
        return ax


def _run(rc, net: Network, area_scale: float) -> dict:
    """Push ``net`` through regioncam ``rc`` (whose layer 1 is input space) and read it out."""
    pre, relu_layer = [], {}
    for l in range(1, net.depth + 1):
        pre.append(rc.linear(_np32(net.weights[l - 1]).T, _np32(net.biases[l - 1])))
        if net.slopes[l - 1] == 0.0:
            rc.relu()
        else:
            rc.leaky_relu(float(net.slopes[l - 1]))
        relu_layer[rc.num_layers - 1] = l
    out_layer = rc.linear(_np32(net.weights[-1]).T, _np32(net.biases[-1]))

    edges = rc.edges
    edge_ids = np.array([[int(v) for v in e.vertices] for e in edges], dtype=np.int64).reshape(-1, 2)
    edge_layer = np.array([0 if e.is_image_boundary else relu_layer.get(e.layer_nr, -1) for e in edges],
                          dtype=np.int64)
    if (edge_layer < 0).any():  # cannot happen for linear/ReLU layers; guard against regioncam changes
        raise RuntimeError("regioncam reported an edge made by a non-activation layer.")
    edge_lengths = np.array([e.length_at(1) for e in edges], dtype=np.float64)

    u = rc.vertex_inputs.astype(np.float64)
    faces = [np.asarray(f.vertex_ids, dtype=np.int64) for f in rc.faces]
    cu = np.stack([u[f].mean(0) for f in faces])  # interior point: faces are convex polygons
    areas = np.array([0.5 * abs(np.dot(u[f, 0], np.roll(u[f, 1], -1)) - np.dot(u[f, 1], np.roll(u[f, 0], -1)))
                      for f in faces]) * area_scale
    cu1 = np.concatenate([cu, np.ones((len(cu), 1))], axis=1)

    def at_centroid(layer):  # the face's own affine map [u, 1] @ A_f evaluated at its centroid
        return np.einsum("fi,fij->fj", cu1, rc.face_activations(layer).astype(np.float64))

    patterns = np.concatenate([at_centroid(p) > 0 for p in pre], axis=1)
    return dict(u=u, edges=edge_ids, edge_layer=edge_layer, edge_lengths=edge_lengths, faces=faces,
                face_areas=areas, centroids_u=cu, patterns=patterns, outputs=at_centroid(out_layer),
                depth=net.depth)


def partition2d(model, bounds=(-1, 1, -1, 1)) -> Partition:
    """Exact partition of the box ``K = [x0, x1] x [y0, y1]`` into activation regions of ``model``
    (``n_0 = 2``), cut by the zero sets ``{z_{l,i} = 0}`` of all hidden neurons.

    Returns a :class:`Partition` with ``num_regions``, ``boundary_length`` (``vol_1`` of the zero
    sets inside ``K``), ``boundary_length_per_layer``, ``area = vol_2(K)``, ``patterns`` and ``plot``.
    Works for ReLU and LeakyReLU nets on any device/dtype (computed in float32 on the CPU).

    Example
    -------
    >>> import lctools
    >>> p = partition2d(lctools.MLP(2, [8, 8], 1, seed=0))
    >>> p.num_regions > 1, p.area
    (True, 4.0)
    """
    import regioncam

    net = parse_network(model)
    _check_2d(net, "partition2d")
    x0, x1, y0, y1 = _check_bounds(bounds)
    hx, hy = (x1 - x0) / 2, (y1 - y0) / 2
    rc = regioncam.Regioncam(size=1.0)  # u in [-1, 1]^2, then x = c + diag(hx, hy) u
    rc.linear(np.diag([hx, hy]).astype(np.float32), np.array([x0 + hx, y0 + hy], dtype=np.float32))
    r = _run(rc, net, area_scale=hx * hy)
    c = np.array([x0 + hx, y0 + hy])
    return Partition(r["u"] * [hx, hy] + c, r["edges"], r["edge_layer"], r["edge_lengths"], r["faces"],
                     r["face_areas"], r["centroids_u"] * [hx, hy] + c, r["patterns"], r["outputs"],
                     r["depth"], (x0, x1, y0, y1), (x1 - x0) * (y1 - y0))


def partition_through_points(model, points, labels: Optional[Sequence[str]] = None, size: float = 1.5) -> Partition:
    """Exact partition of the 2D plane through three inputs ``points`` (shape ``(3, n_0)``, or
    ``(3, ...)`` flattening to it for a model that starts with ``nn.Flatten``).

    The plane is ``x = u @ plane_weight + plane_bias`` with orthonormal rows, so lengths and
    areas in plane coordinates ``u`` are those in input space.  The square
    ``[-s, s]^2`` has ``s = size * max |u|`` over the three points (regioncam's choice).
    ``Partition.plot`` marks the points with ``labels`` (default ``x1, x2, x3``).

    Example
    -------
    >>> import torch, lctools
    >>> pts = torch.eye(3, 5)
    >>> p = partition_through_points(lctools.MLP(5, [8], 1, seed=0), pts)
    >>> p.num_regions >= 1
    True
    """
    import regioncam

    net = parse_network(model)
    pts = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
    if pts.ndim < 2 or pts.shape[0] != 3:
        raise ValueError(f"points must be exactly three inputs, shape (3, {net.in_dim}); got shape {pts.shape}.")
    if pts.ndim > 2 and not net.flatten:
        raise ValueError(f"points have shape {pts.shape} but the model does not start with nn.Flatten; "
                         f"give shape (3, {net.in_dim}).")
    pts = pts.reshape(3, -1).astype(np.float64)
    if pts.shape[1] != net.in_dim:
        raise ValueError(f"points have {pts.shape[1]} coordinates each but the network expects n_0 = {net.in_dim}.")
    if not np.isfinite(pts).all():
        raise ValueError("points contain NaN or infinite values.")
    if np.linalg.matrix_rank(pts[1:] - pts[0], tol=1e-6 * max(1.0, np.abs(pts).max())) < 2:
        raise ValueError("the three points are (nearly) collinear or repeated, so they span no plane.")
    labels = ["x1", "x2", "x3"] if labels is None else [str(s) for s in labels]
    if len(labels) != 3:
        raise ValueError(f"labels must name the three points, got {len(labels)} labels.")
    if not size > 0:
        raise ValueError(f"size must be positive, got {size!r}.")

    rc = regioncam.Regioncam.through_points(pts.astype(np.float32), size=float(size))
    Wp, bp = rc.plane.weight.astype(np.float64), rc.plane.bias.astype(np.float64)
    scale = float(np.sqrt(np.linalg.det(Wp @ Wp.T)))  # 1 up to rounding: orthonormal rows
    r = _run(rc, net, area_scale=scale)
    s = float(np.abs(r["u"]).max())
    return Partition(r["u"], r["edges"], r["edge_layer"], r["edge_lengths"], r["faces"], r["face_areas"],
                     r["centroids_u"], r["patterns"], r["outputs"], r["depth"], (-s, s, -s, s),
                     (2 * s) ** 2 * scale, plane_weight=Wp, plane_bias=bp,
                     points=np.asarray(rc.plane.inverse(pts.astype(np.float32)), dtype=np.float64), labels=labels)


@dataclass
class PatternMap:
    """A raster of activation patterns on ``bounds``: ``ids[i, j]`` is the region id of the pixel
    centre ``(x_j, y_i)`` (``y`` increases with ``i``); equal ids mean equal patterns, and
    ``patterns[k]`` is the pattern ``z_{l,i} > 0`` of id ``k``."""

    ids: np.ndarray
    patterns: np.ndarray
    bounds: tuple

    def __repr__(self) -> str:
        return f"PatternMap(num_patterns={self.num_patterns}, resolution={self.ids.shape[0]}, bounds={self.bounds})"

    @property
    def num_patterns(self) -> int:
        """Number of distinct activation patterns seen on the raster (``<=`` the exact region count)."""
        return len(self.patterns)

    def plot(self, ax=None, cmap="turbo"):
        """Show the map (colours as in :meth:`Partition.plot`) and return the Axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 5))
        ax.imshow(pattern_colors(self.patterns, cmap)[self.ids], origin="lower", extent=self.bounds,
                  interpolation="nearest")
        ax.set(xlabel="$x_1$", ylabel="$x_2$")
        ax.set_title(f"{self.num_patterns} activation patterns on a {self.ids.shape[0]}² raster", fontsize="medium")
        return ax


@torch.no_grad()
def pattern_map(model, bounds=(-1, 1, -1, 1), resolution: int = 400, batch_size: int = 65536) -> PatternMap:
    """Activation patterns ``(z_{l,i}(x) > 0)_{l,i}`` on a ``resolution x resolution`` grid of pixel
    centres in ``bounds``, computed with torch on the model's device in batches of ``batch_size``.

    Example
    -------
    >>> import lctools
    >>> pattern_map(lctools.MLP(2, [8], 1, seed=0), resolution=32).ids.shape
    (32, 32)
    """
    net = parse_network(model)
    _check_2d(net, "pattern_map")
    x0, x1, y0, y1 = _check_bounds(bounds)
    if int(resolution) < 1 or int(batch_size) < 1:
        raise ValueError(f"resolution and batch_size must be >= 1, got {resolution} and {batch_size}.")
    res = int(resolution)
    kw = dict(device=net.device, dtype=net.dtype)
    xs = x0 + (torch.arange(res, **kw) + 0.5) * (x1 - x0) / res
    ys = y0 + (torch.arange(res, **kw) + 0.5) * (y1 - y0) / res
    n, nbytes = net.num_neurons, (net.num_neurons + 7) // 8
    bitval = 2 ** torch.arange(7, -1, -1, device=net.device)  # big-endian, as np.packbits
    packed = []
    for sl in chunks(res * res, batch_size):
        idx = torch.arange(sl.start, sl.stop, device=net.device)
        grid = torch.stack([xs[idx % res], ys[idx // res]], dim=1)
        bits = [layer.z > 0 for layer in hidden_pass(net, grid, jacobians=False)]
        b = torch.nn.functional.pad(torch.cat(bits, dim=1), (0, 8 * nbytes - n))
        packed.append((b.view(-1, nbytes, 8).long() * bitval).sum(-1).to(torch.uint8).cpu().numpy())
    uniq, inv = np.unique(np.concatenate(packed), axis=0, return_inverse=True)
    patterns = np.unpackbits(uniq, axis=1)[:, :n].astype(bool)
    return PatternMap(inv.reshape(res, res), patterns, (x0, x1, y0, y1))


@torch.no_grad()
def activation_patterns(model, x) -> torch.Tensor:
    """The activation patterns ``(z_{l,i}(x) > 0)_{l,i}`` of the inputs ``x``, as a bool tensor
    of shape ``(N, #hidden neurons)`` (neurons of layer 1 first), on the CPU.

    Example
    -------
    >>> import torch, lctools
    >>> activation_patterns(lctools.MLP(2, [8, 4], 1, seed=0), torch.rand(5, 2)).shape
    torch.Size([5, 12])
    """
    net = parse_network(model)
    x = check_inputs(net, x)
    return torch.cat([layer.z > 0 for layer in hidden_pass(net, x, jacobians=False)], dim=1).cpu()


def arrangement_bound(n0: int, n: int) -> int:
    """The most regions ``n`` hyperplanes can cut ``R^{n0}`` into (Zaslavsky):
    ``sum_{j=0}^{n0} C(n, j)``, reached by hyperplanes in general position; the number of
    activation regions of a network with one hidden layer of width ``n``.

    Example
    -------
    >>> arrangement_bound(2, 3)  # three lines in general position cut the plane into 7 regions
    7
    """
    return sum(math.comb(n, j) for j in range(n0 + 1))


def serra_bound(n0: int, widths: Sequence[int]) -> int:
    """The upper bound of Serra, Tjandraatmadja & Ramalingam (2018, Theorem 1) on the number
    of linear regions of a ReLU network with input dimension ``n0`` and hidden widths
    ``n_1, ..., n_L``: ``sum over (j_1, ..., j_L) in J of prod_l C(n_l, j_l)`` with
    ``J = {0 <= j_l <= min(n0, n_1 - j_1, ..., n_{l-1} - j_{l-1}, n_l)}``.  For one layer it is
    :func:`arrangement_bound`.

    Example
    -------
    >>> serra_bound(2, [3]) == arrangement_bound(2, 3)
    True
    """
    widths = [int(n) for n in widths]
    total = 0
    for js in itertools.product(*(range(min(n0, n) + 1) for n in widths)):
        if all(j <= min([n0, widths[l]] + [widths[k] - js[k] for k in range(l)]) for l, j in enumerate(js)):
            total += math.prod(math.comb(n, j) for n, j in zip(widths, js))
    return total
