"""Simulated stability: does a rigid object stand on flat ground? (PyBullet)

The check follows DSO (Li et al., arXiv 2503.22677; ``papers/dso.md``): drop the object
on a plane, simulate up to 10 s and call it stable when its tilt stays under 20 degrees.
Unlike DSO's check, every trial starts with a small tilt (a *nudge*, about 1 degree) in one
of several evenly spaced directions, so that a body balanced on a knife edge (a cone on
its tip) does not read as stable, and the score is the tilt of the body's up-vector
(yaw is ignored, where DSO's 2 acos(w) counts spin about the vertical too).

Mass, centre of mass and principal inertia come from :mod:`simkit.geometry` (exact for
a closed mesh) and are set explicitly on the body: left to itself PyBullet puts the
centre of mass at the link origin and guesses the inertia from the bounding box. The
collider is the convex hull written in the body's principal frame (origin at the centre
of mass, axes along the principal axes), so the link frame *is* the inertial frame and
``localInertiaDiagonal`` takes the principal moments as they are; this is equivalent to
a ``baseInertialFrameOrientation`` but leaves no doubt about which frame PyBullet's
base pose refers to.

Three choices keep the verdict a property of the object rather than of the simulator
(each is a :class:`StabilityConfig` field, with the reason in its docstring): the object
is simulated at a fixed size (rigid equilibrium is scale invariant), the first half
second is damped so the nudge's own energy cannot rock a standing body over, and each
trial stops early once the body falls or comes to rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simkit.geometry import Mesh, VoxelGrid

__all__ = [
    "StabilityConfig",
    "StabilityResult",
    "check_stability",
    "collider_parts",
    "prepare_bodies",
]

logger = logging.getLogger(__name__)

_COLLIDERS = ("hull", "vhacd")
# Rest detection, in the normalised frame (object's largest extent = reference_size_m):
# speeds below these for ``rest_time_s`` end a trial early.
_REST_LINEAR_SPEED = 2e-3  # m/s
_REST_ANGULAR_SPEED = 1e-2  # rad/s


def _positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if ok:
        value = float(value)
        ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        want = "a finite number >= 0" if allow_zero else "a positive finite number"
        raise ValueError(f"{name} must be {want}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class StabilityConfig:
    """Settings of :func:`check_stability`.

    Attributes:
        sim_time_s: longest simulated time per trial, seconds (DSO: 10 s).
        time_step_s: physics step, seconds. Default 1/120 s (was PyBullet's 1/240 s),
            with 40 solver iterations (were 20): half the steps, each barely dearer (a
            step's cost is mostly fixed overhead). Measured on 2026-11-29 against 1/240 s
            with 20 iterations, it changed no verdict on 1,104 objects (the 504 of
            ``scripts/bench/stability_agreement.py`` and the 3 x 200 of
            ``scripts/bench/stability.py``). 1/120 s with 20 iterations flipped one (a
            lamp with a 5.6 mm margin, which then fell), 1/90 s flipped 1 of 704 and
            1/60 s 13 of 704: keep the iterations if you change the step.
        gravity: gravitational acceleration, m/s^2, along -z.
        density: uniform density, kg/m^3 (the verdict does not depend on it).
        lateral_friction: Coulomb friction coefficient of object and ground.
        tilt_threshold_deg: a trial falls once the up-vector tilts beyond this, degrees
            (DSO: 20).
        nudge_deg: initial tilt of every trial, degrees, about a horizontal axis.
        trials: number of nudge directions, evenly spaced in azimuth and offset by a
            random angle drawn from ``seed``.
        seed: non-negative integer seed of that offset.
        collider: ``"hull"``: the convex hull of the mesh. ``"vhacd"``: a convex
            decomposition of the mesh by PyBullet's V-HACD, a compound of convex parts
            that keeps the shape's concave parts (a notch stays empty). On flat ground
            the two give the same verdict: a plane can only touch a body at points of
            its convex hull, so the hull is exact there and the default; the
            decomposition costs 0.1-1 s per object more and is there for worlds where
            concave parts matter (a ray, another body). See :func:`collider_parts`.
        decomposition_resolution: V-HACD's voxel resolution (``"vhacd"`` only): more
            follows the surface more closely and costs more.
        rest_time_s: a trial ends early once the body's linear and angular speeds have
            stayed below small thresholds for this long, seconds.
        check_every: steps between two state queries (early stopping granularity).
            Default 2: with the 1/120 s step, the same 60 Hz as the former 4 at 1/240 s.
        reference_size_m: the object is simulated uniformly scaled to this size,
            metres: twice the largest distance from its centre of mass to a vertex
            (``None``: at its true size). Rigid equilibrium on flat ground is scale
            invariant, and a fixed simulated size keeps collision margins, rest
            thresholds and topple times (which grow as sqrt(size / g)) in the
            simulator's comfortable range. Poses and displacements are reported in the
            object's own units.
        solver_iterations: PyBullet constraint-solver iterations per step (default 40:
            see ``time_step_s``).
        stop_at_first_fall: skip the remaining trials once one falls (the verdict is
            then known; ``tilt_deg`` and the pose are the worst over the trials run).
        settle_time_s: seconds at the start of each trial during which the body's
            velocities are damped at ``settle_damping`` (then it is free; rest is only
            detected after it). Gravity is not damped, so equilibria and their
            stability are unchanged; what goes is the nudge's stored energy, which would
            otherwise rock a body back over its *other* edge: undamped, a chair whose
            centre of mass sits 5 cm inside its front edge (static tipping angle 4.8
            degrees), nudged 1 degree towards its back, swings forward through upright
            and over the front edge, because a tall body keeps most of its angular
            velocity when its support switches edges. 0 disables it (DSO's undamped
            rigid body).
        settle_damping: velocity damping rate during settling, 1/s (PyBullet's
            ``linearDamping`` and ``angularDamping``, both needed so that a rotation
            about a ground pivot is damped at this rate, not only its part about the
            centre of mass).
    """

    sim_time_s: float = 10.0
    time_step_s: float = 1.0 / 120.0
    gravity: float = 9.81
    density: float = 500.0
    lateral_friction: float = 0.8
    tilt_threshold_deg: float = 20.0
    nudge_deg: float = 1.0
    trials: int = 4
    seed: int = 0
    collider: str = "hull"
    decomposition_resolution: int = 100_000
    rest_time_s: float = 0.25
    check_every: int = 2
    reference_size_m: float | None = 1.0
    solver_iterations: int = 40
    stop_at_first_fall: bool = True
    settle_time_s: float = 0.25
    settle_damping: float = 20.0

    def __post_init__(self) -> None:
        _positive("sim_time_s", self.sim_time_s)
        _positive("time_step_s", self.time_step_s)
        if self.time_step_s > self.sim_time_s:
            raise ValueError(
                f"time_step_s ({self.time_step_s!r}) must not exceed sim_time_s ({self.sim_time_s!r})"
            )
        _positive("gravity", self.gravity)
        _positive("density", self.density)
        _positive("lateral_friction", self.lateral_friction, allow_zero=True)
        _positive("tilt_threshold_deg", self.tilt_threshold_deg)
        if self.tilt_threshold_deg >= 180:
            raise ValueError(
                f"tilt_threshold_deg must be below 180 degrees, got {self.tilt_threshold_deg!r}"
            )
        _positive("nudge_deg", self.nudge_deg, allow_zero=True)
        if self.nudge_deg >= self.tilt_threshold_deg:
            raise ValueError(
                f"nudge_deg ({self.nudge_deg!r}) must be below tilt_threshold_deg "
                f"({self.tilt_threshold_deg!r})"
            )
        _positive("rest_time_s", self.rest_time_s)
        _positive("settle_time_s", self.settle_time_s, allow_zero=True)
        _positive("settle_damping", self.settle_damping, allow_zero=True)
        if self.reference_size_m is not None:
            _positive("reference_size_m", self.reference_size_m)
        for name in ("trials", "check_every", "solver_iterations", "decomposition_resolution"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, (int, np.integer))
            or self.seed < 0
        ):
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if not isinstance(self.stop_at_first_fall, bool):
            raise ValueError(f"stop_at_first_fall must be a bool, got {self.stop_at_first_fall!r}")
        if self.collider not in _COLLIDERS:
            raise ValueError(f"collider must be one of {_COLLIDERS}, got {self.collider!r}")


@dataclass(frozen=True)
class StabilityResult:
    """Verdict of :func:`check_stability`.

    Attributes:
        stable: every trial ended with the tilt under the threshold.
        tilt_deg: worst tilt over trials, degrees: the angle between the body's
            up-vector (its +z at rest, before the nudge) and world +z, at the end of each
            trial (a trial that falls stops just past the threshold).
        final_position: (3,) centre of mass at the end of the worst trial, in the
            object's units (metres), world frame with the ground at z = 0.
        final_orientation: (4,) quaternion (x, y, z, w) rotating the object from its
            given pose to its final pose in the worst trial.
        displacement_m: worst horizontal displacement of the centre of mass, metres.
        simulated_time_s: simulated time summed over trials, seconds (of the normalised
            object when ``reference_size_m`` is set).
        trials: number of trials run (fewer than ``config.trials`` when one fell and
            ``config.stop_at_first_fall`` is set).
        error: ``None`` for a simulated verdict; a message where a caller (the parallel
            layer) turned an exception into a result (see :meth:`from_error`).
    """

    stable: bool
    tilt_deg: float
    final_position: tuple[float, float, float]
    final_orientation: tuple[float, float, float, float]
    displacement_m: float
    simulated_time_s: float
    trials: int
    error: str | None = None

    @classmethod
    def from_error(cls, error: str) -> StabilityResult:
        """The result for an object that could not be simulated.

        ``stable`` is False, the numeric fields are NaN (``None`` in :meth:`to_dict`),
        ``trials`` is 0 and ``error`` holds the message.
        """
        if not isinstance(error, str) or not error:
            raise ValueError(f"error must be a non-empty message, got {error!r}")
        nan = math.nan
        return cls(
            stable=False,
            tilt_deg=nan,
            final_position=(nan, nan, nan),
            final_orientation=(nan, nan, nan, nan),
            displacement_m=nan,
            simulated_time_s=0.0,
            trials=0,
            error=error,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python view for JSON output (NaN, which only error results hold, is None)."""

        def clean(x: float) -> float | None:
            return x if math.isfinite(x) else None

        out = dataclasses.asdict(self)
        out["tilt_deg"] = clean(self.tilt_deg)
        out["displacement_m"] = clean(self.displacement_m)
        out["final_position"] = [clean(v) for v in self.final_position]
        out["final_orientation"] = [clean(v) for v in self.final_orientation]
        return out


@dataclass(frozen=True)
class _Body:
    """A rigid body in its principal frame: everything float64 numpy, metres / kg.

    All a simulation needs, and small: this (not the mesh) is what the parallel layer
    ships to its workers (see :func:`prepare_bodies`).
    """

    hull: np.ndarray  # (H, 3) convex-hull vertices in the principal frame (origin at COM)
    com: np.ndarray  # (3,) centre of mass in the object frame
    axes: np.ndarray  # (3, 3) principal axes as columns, det +1 (principal -> object)
    moments: np.ndarray  # (3,) principal moments, kg m^2
    mass: float
    density: float  # kg/m^3 that mass and moments were computed at
    # The surface in the principal frame, (V, 3) vertices and (F, 3) faces, kept only
    # for a collider built from the surface itself (``collider != "hull"``).
    surface: tuple[np.ndarray, np.ndarray] | None = None


def _as_mesh(obj: Any) -> Mesh:
    if isinstance(obj, Mesh):
        return obj
    if isinstance(obj, VoxelGrid):
        if obj.batch_size != 1:
            raise ValueError(
                f"check_stability takes one object; got a VoxelGrid batch of {obj.batch_size}"
            )
        return obj.to_mesh()[0]
    if isinstance(obj, (str, os.PathLike)):
        return Mesh.load(Path(obj))
    raise TypeError(
        f"check_stability takes a Mesh, a VoxelGrid or a mesh file path, got {type(obj).__name__}"
    )


def _vertices_and_extent(mesh: Mesh) -> tuple[np.ndarray, float]:
    vertices = mesh.vertices.detach().cpu().double().numpy()
    extent = float(np.ptp(vertices, axis=0).max()) if len(vertices) else 0.0
    if not extent > 0:
        raise ValueError("mesh has zero extent: all vertices coincide")
    return vertices, extent


def _finish_body(
    vertices: np.ndarray,
    extent: float,
    volume: float,
    mass: float,
    com: np.ndarray,
    inertia: np.ndarray,
    density: float,
    faces: np.ndarray | None = None,
) -> _Body:
    """Validate mass properties, diagonalise the inertia and build the hull."""
    from scipy.spatial import ConvexHull, QhullError

    # A closed but flat mesh has volume ~0 up to round-off; its inertia is meaningless.
    if not volume > 1e-9 * extent**3:
        raise ValueError(
            f"mesh encloses (almost) no volume: {volume:.3g} m^3 for extent {extent:.3g} m"
        )
    moments, axes = np.linalg.eigh(inertia)
    if np.linalg.det(axes) < 0:
        axes[:, 2] = -axes[:, 2]
    if not (np.all(np.isfinite(com)) and np.all(np.isfinite(moments)) and moments.min() > 0):
        raise ValueError(f"mesh has invalid mass properties: com {com}, moments {moments}")
    try:
        hull = ConvexHull(vertices)
    except QhullError as exc:
        raise ValueError(f"mesh has no 3D convex hull: {exc}") from None
    local = (vertices[hull.vertices] - com) @ axes  # rows: coordinates in the principal frame
    surface = None if faces is None else ((vertices - com) @ axes, np.asarray(faces))
    return _Body(
        hull=local, com=com, axes=axes, moments=moments, mass=mass, density=density,
        surface=surface,
    )  # fmt: skip


def _faces(mesh: Mesh) -> np.ndarray:
    return mesh.faces.detach().cpu().numpy().astype(np.int64)


def _body(mesh: Mesh, density: float, *, keep_surface: bool = False) -> _Body:
    vertices, extent = _vertices_and_extent(mesh)
    mp = mesh.mass_properties(density)  # raises ValueError on open / inward meshes
    return _finish_body(
        vertices,
        extent,
        float(mp.volume),
        float(mp.mass),
        mp.center_of_mass.detach().cpu().double().numpy(),
        mp.inertia.detach().cpu().double().numpy(),
        density,
        _faces(mesh) if keep_surface else None,
    )


def prepare_bodies(
    objs: list[Any], density: float, *, keep_surface: bool = False
) -> list[_Body | None]:
    """What the simulator needs of each object, with mass properties computed batched.

    Meshes and voxel grids get their mass properties from one
    :func:`~simkit.geometry.batch_mass_properties` call over the batch (one call per
    mesh pays torch's per-operation overhead, about 1 ms), their convex hull, and their
    principal frame. The result for an object is ``None`` where it is anything else
    (a file path: loaded where it is simulated) or where it cannot be simulated (an
    open mesh, a NaN vertex, ...): :func:`check_stability` on the original object then
    raises the same error it always did. The bodies are exactly those
    :func:`check_stability` computes itself (same formulas, float64). ``keep_surface``
    keeps each mesh's surface on its body, which a collider other than the hull needs
    (``StabilityConfig.collider``).
    """
    from simkit.geometry import batch_mass_properties

    out: list[_Body | None] = [None] * len(objs)
    meshes: dict[int, tuple[Mesh, np.ndarray, float]] = {}
    for i, obj in enumerate(objs):
        if not isinstance(obj, (Mesh, VoxelGrid)):
            continue
        try:
            mesh = _as_mesh(obj)
            vertices, extent = _vertices_and_extent(mesh)
        except (ValueError, TypeError, RuntimeError):
            continue
        if mesh.num_faces and np.all(np.isfinite(vertices)):
            meshes[i] = (mesh, vertices, extent)
    if not meshes:
        return out
    index = list(meshes)
    try:
        mp = batch_mass_properties([meshes[i][0] for i in index], density)
    except (ValueError, TypeError, RuntimeError):
        mp = None  # a bad mesh in the batch: each is done alone (and errors alone)
    for k, i in enumerate(index):
        mesh, vertices, extent = meshes[i]
        try:
            if mp is None:
                out[i] = _body(mesh, density, keep_surface=keep_surface)
            else:
                out[i] = _finish_body(
                    vertices,
                    extent,
                    float(mp.volume[k]),
                    float(mp.mass[k]),
                    mp.center_of_mass[k].detach().cpu().double().numpy(),
                    mp.inertia[k].detach().cpu().double().numpy(),
                    density,
                    _faces(mesh) if keep_surface else None,
                )
        except (ValueError, TypeError, RuntimeError):
            out[i] = None
    return out


def _rotation_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues' rotation matrix about ``axis`` (normalised here) by ``angle`` radians.

    Plain numpy: scipy's ``Rotation`` costs ~0.1 ms a call, a good part of a small
    object's check once per trial. Tested against scipy in tests/simkit/test_stability.py.
    """
    x, y, z = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def _quat_from_matrix(m: np.ndarray) -> list[float]:
    """(x, y, z, w) of a rotation matrix (Shepperd's method, as scipy's from_matrix)."""
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    i = int(np.argmax([m[0, 0], m[1, 1], m[2, 2], tr]))
    if i == 3:
        q = [m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1], 1.0 + tr]
    else:
        j, k = (i + 1) % 3, (i + 2) % 3
        q = [0.0, 0.0, 0.0, m[k, j] - m[j, k]]
        q[i] = 1.0 - tr + 2.0 * m[i, i]
        q[j] = m[j, i] + m[i, j]
        q[k] = m[k, i] + m[i, k]
    norm = math.sqrt(sum(c * c for c in q))
    return [float(c) / norm for c in q]


def check_stability(
    obj: Mesh | VoxelGrid | str | os.PathLike[str],
    config: StabilityConfig | None = None,
    *,
    client: int | None = None,
) -> StabilityResult:
    """Simulate whether ``obj`` stands on flat ground (PyBullet, one DIRECT client).

    Each of ``config.trials`` trials places the object, tilted by ``config.nudge_deg``
    towards one azimuth, with its lowest point on the ground plane z = 0 and at rest, and
    steps the simulation until the tilt passes ``config.tilt_threshold_deg`` (falls),
    the body comes to rest (verdict by tilt), or ``config.sim_time_s`` runs out
    (verdict by tilt). The object is stable when every trial is.

    The collider is the convex hull of the mesh (or its convex decomposition, see
    ``StabilityConfig.collider``); its link frame is the principal frame at the centre
    of mass, with the exact mass and principal moments of the solid at
    ``config.density``.

    Args:
        obj: a watertight :class:`~simkit.geometry.Mesh` (vertices (V, 3), metres, z up,
            taken upright as given; its position does not matter), a
            :class:`~simkit.geometry.VoxelGrid` holding one grid (simulated as its
            marching-cubes surface, :meth:`VoxelGrid.to_mesh`), or a path to a mesh file
            (:meth:`Mesh.load`).
        config: the settings; ``StabilityConfig()`` when ``None``.
        client: a connected PyBullet physics client id to reuse (the caller owns it and
            disconnects it; its world is reset here). ``None`` connects one DIRECT
            client for this call and always disconnects it. Connecting costs ~20 ms,
            more than simulating a small object, so a worker that checks many objects
            should hold one client; the result is the same either way.

    Returns:
        A :class:`StabilityResult` with ``error=None``.

    Raises:
        TypeError: ``obj`` or ``config`` has the wrong type.
        ValueError: an invalid object: an open (non-watertight) or inward-wound mesh
            (no voxel fill is attempted), zero volume, NaN vertices in a file, an empty
            voxel grid or a batch of several grids, an unknown file suffix.
        FileNotFoundError: a path that does not exist.
    """
    import pybullet as p

    if config is None:
        config = StabilityConfig()
    if not isinstance(config, StabilityConfig):
        raise TypeError(f"config must be a StabilityConfig, got {type(config).__name__}")
    keep_surface = config.collider != "hull"
    if isinstance(obj, _Body):  # prepared by prepare_bodies (the parallel layer)
        body = obj
        if keep_surface and body.surface is None:
            raise ValueError(
                f"collider {config.collider!r} needs the surface: prepare the body with "
                "prepare_bodies(..., keep_surface=True)"
            )
        if body.density != config.density:  # mass and moments are linear in density
            ratio = config.density / body.density
            body = dataclasses.replace(
                body, mass=body.mass * ratio, moments=body.moments * ratio, density=config.density
            )
    else:
        body = _body(_as_mesh(obj), config.density, keep_surface=keep_surface)

    if client is not None and (isinstance(client, bool) or not isinstance(client, int)):
        raise TypeError(f"client must be a PyBullet client id (int) or None, got {client!r}")
    own_client = client is None
    cid = p.connect(p.DIRECT) if own_client else int(client)
    try:
        # A clean world every call: the verdict must not depend on earlier calls.
        p.resetSimulation(physicsClientId=cid)
        result = _run_trials(p, cid, body, config)
    finally:
        if own_client:
            p.disconnect(physicsClientId=cid)
    return result


@contextlib.contextmanager
def _native_output_silenced() -> Iterator[None]:
    """Send file descriptors 1 and 2 to /dev/null meanwhile.

    V-HACD prints its progress from C++ straight to the process's stdout, which no
    Python redirection catches and which would corrupt ``simkit stability --json``.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    lines = [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def _vhacd(
    p: Any, cid: int, vertices: np.ndarray, faces: np.ndarray, resolution: int, workdir: Path
) -> Path:
    """Convex decomposition of a surface by PyBullet's V-HACD: the path of an OBJ file
    with one object (``o`` line) per convex part, which ``createCollisionShape`` loads
    as a compound of convex hulls."""
    source, target = workdir / "surface.obj", workdir / "parts.obj"
    _write_obj(source, vertices, faces)
    with _native_output_silenced():
        p.vhacd(
            str(source), str(target), str(workdir / "vhacd.log"),
            resolution=int(resolution), physicsClientId=cid,
        )  # fmt: skip
    if not target.is_file() or "\nf " not in target.read_text():
        raise RuntimeError("V-HACD produced no convex parts for this mesh")
    return target


def _read_obj_parts(path: Path) -> list[np.ndarray]:
    """The vertices of each object (``o`` line) of an OBJ file (global vertex order)."""
    parts: list[list[list[float]]] = []
    for line in path.read_text().splitlines():
        if line.startswith("o ") or (line.startswith("v ") and not parts):
            parts.append([])
        if line.startswith("v "):
            parts[-1].append([float(v) for v in line.split()[1:4]])
    return [np.asarray(part, dtype=np.float64) for part in parts if part]


def _collision_shape(
    p: Any, cid: int, body: _Body, scale: float, config: StabilityConfig
) -> tuple[int, np.ndarray]:
    """The body's collision shape, in its principal frame at the simulated scale, and the
    (K, 3) vertices it is the convex hull(s) of (where it rests on the ground)."""
    if config.collider == "hull":
        hull = body.hull * scale
        return p.createCollisionShape(
            p.GEOM_MESH, vertices=hull.tolist(), physicsClientId=cid
        ), hull
    if body.surface is None:  # check_stability keeps it for this collider
        raise ValueError(f"collider {config.collider!r} needs the body's surface")
    vertices, faces = body.surface
    resolution = config.decomposition_resolution
    with tempfile.TemporaryDirectory(prefix="simkit-vhacd-") as workdir:
        path = _vhacd(p, cid, vertices * scale, faces, resolution, Path(workdir))
        # V-HACD's parts are a voxel or so larger than the surface: the body must be
        # placed by them, or it starts inside the ground and is kicked out.
        support = np.concatenate(_read_obj_parts(path))
        # Read here, before the directory goes (loading the file is not lazy).
        shape = p.createCollisionShape(p.GEOM_MESH, fileName=str(path), physicsClientId=cid)
    return shape, support


def collider_parts(
    obj: Mesh | VoxelGrid | str | os.PathLike[str], config: StabilityConfig | None = None
) -> list[np.ndarray]:
    """The convex parts the simulator's collider is made of, in the object's frame.

    Args:
        obj: as for :func:`check_stability`.
        config: its ``collider`` and ``decomposition_resolution`` are used;
            ``StabilityConfig()`` (the hull) when ``None``.

    Returns:
        One (V_i, 3) float64 array of vertices per convex part, in the object's units and
        frame: a single part (the convex hull's vertices) for ``collider="hull"``, the
        V-HACD parts for ``"vhacd"``.
    """
    import pybullet as p

    if config is None:
        config = StabilityConfig()
    mesh = _as_mesh(obj)
    vertices, _ = _vertices_and_extent(mesh)
    if config.collider == "hull":
        from scipy.spatial import ConvexHull

        return [vertices[ConvexHull(vertices).vertices]]
    cid = p.connect(p.DIRECT)
    try:
        with tempfile.TemporaryDirectory(prefix="simkit-vhacd-") as workdir:
            path = _vhacd(
                p, cid, vertices, _faces(mesh), config.decomposition_resolution, Path(workdir)
            )
            return _read_obj_parts(path)
    finally:
        p.disconnect(physicsClientId=cid)


def nudge_azimuths(config: StabilityConfig) -> np.ndarray:
    """(trials,) azimuths (radians) of the nudge directions: evenly spaced, seeded offset."""
    return np.array(_nudge_azimuths(int(config.seed), int(config.trials)))


@functools.lru_cache(maxsize=64)
def _nudge_azimuths(seed: int, trials: int) -> tuple[float, ...]:
    # Seeding a generator costs ~0.1 ms, once per object otherwise.
    offset = np.random.default_rng(seed).uniform(0.0, 2.0 * math.pi)
    return tuple((offset + 2.0 * math.pi * np.arange(trials) / trials).tolist())


def _run_trials(p: Any, cid: int, body: _Body, config: StabilityConfig) -> StabilityResult:
    """Simulate every nudge direction on client ``cid`` (an empty world)."""
    from scipy.spatial.transform import Rotation

    # Size = twice the largest COM-to-hull distance: invariant to translation and rotation.
    extent = 2.0 * float(np.linalg.norm(body.hull, axis=1).max())
    scale = 1.0 if config.reference_size_m is None else config.reference_size_m / extent
    size = extent * scale  # simulated size, m
    mass = body.mass * scale**3
    moments = body.moments * scale**5
    # Object up (+z) in the principal frame: the tilt is the angle of R_link @ up_local.
    up_local = body.axes[2, :]

    azimuths = nudge_azimuths(config)
    nudge = math.radians(config.nudge_deg)
    cos_threshold = math.cos(math.radians(config.tilt_threshold_deg))
    max_steps = max(1, int(round(config.sim_time_s / config.time_step_s)))
    rest_steps = max(1, int(math.ceil(config.rest_time_s / config.time_step_s)))
    settle_steps = int(math.ceil(config.settle_time_s / config.time_step_s))
    damping = config.settle_damping if settle_steps else 0.0
    every = config.check_every
    lin2 = (_REST_LINEAR_SPEED * size) ** 2
    ang2 = _REST_ANGULAR_SPEED**2

    worst: tuple[float, np.ndarray, np.ndarray] | None = None
    worst_disp = 0.0
    all_stable = True
    total_steps = 0
    trials_run = 0
    p.setGravity(0.0, 0.0, -config.gravity, physicsClientId=cid)
    p.setPhysicsEngineParameter(
        fixedTimeStep=config.time_step_s,
        numSubSteps=0,
        numSolverIterations=config.solver_iterations,
        deterministicOverlappingPairs=1,
        physicsClientId=cid,
    )
    # The ground is a large box with its top face at z = 0 (a GEOM_PLANE costs ~10x more
    # to create in PyBullet and behaves the same here).
    half = [100.0 * size, 100.0 * size, 0.5 * size]
    ground_shape = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=cid)
    ground = p.createMultiBody(
        0.0, ground_shape, basePosition=[0.0, 0.0, -half[2]], physicsClientId=cid
    )
    p.changeDynamics(
        ground, -1, lateralFriction=config.lateral_friction, restitution=0.0,
        physicsClientId=cid,
    )  # fmt: skip
    shape, support = _collision_shape(p, cid, body, scale, config)
    for azimuth in azimuths:
        # Tilt the up-vector towards `azimuth`: rotate about the horizontal axis
        # perpendicular to it.
        axis = np.array([-math.sin(azimuth), math.cos(azimuth), 0.0])
        rot0 = _rotation_matrix(axis, nudge) @ body.axes if nudge > 0 else body.axes
        lowest = float((support @ rot0[2]).min())
        # The body starts above the world origin (its horizontal place does not matter;
        # far from the origin it would cost float precision) and is moved back below.
        uid = p.createMultiBody(
            baseMass=mass,
            baseCollisionShapeIndex=shape,
            basePosition=[0.0, 0.0, -lowest],
            baseOrientation=_quat_from_matrix(rot0),  # x, y, z, w
            physicsClientId=cid,
        )
        p.changeDynamics(
            uid, -1, localInertiaDiagonal=moments.tolist(),
            lateralFriction=config.lateral_friction, restitution=0.0,
            rollingFriction=0.0, spinningFriction=0.0, linearDamping=damping,
            angularDamping=damping, physicsClientId=cid,
        )  # fmt: skip
        at_rest = 0
        steps = 0
        fell = False
        settling = settle_steps > 0
        while steps < max_steps:
            n = min(every, max_steps - steps)
            for _ in range(n):
                p.stepSimulation(physicsClientId=cid)
            steps += n
            if settling and steps >= settle_steps:
                settling = False
                p.changeDynamics(
                    uid, -1, linearDamping=0.0, angularDamping=0.0, physicsClientId=cid
                )
            _, orn = p.getBasePositionAndOrientation(uid, physicsClientId=cid)
            m = p.getMatrixFromQuaternion(orn)
            cos_tilt = m[6] * up_local[0] + m[7] * up_local[1] + m[8] * up_local[2]
            if cos_tilt < cos_threshold:
                fell = True
                break
            v, w = p.getBaseVelocity(uid, physicsClientId=cid)
            if not settling and (
                v[0] * v[0] + v[1] * v[1] + v[2] * v[2] < lin2
                and w[0] * w[0] + w[1] * w[1] + w[2] * w[2] < ang2
            ):
                at_rest += n
                if at_rest >= rest_steps:
                    break
            else:
                at_rest = 0
        pos, orn = p.getBasePositionAndOrientation(uid, physicsClientId=cid)
        p.removeBody(uid, physicsClientId=cid)
        total_steps += steps
        rot = np.asarray(p.getMatrixFromQuaternion(orn)).reshape(3, 3)
        cos_tilt = float(np.clip((rot @ up_local)[2], -1.0, 1.0))
        tilt = math.degrees(math.acos(cos_tilt))
        stable = not fell and cos_tilt >= cos_threshold
        all_stable &= stable
        pos = np.asarray(pos) / scale
        worst_disp = max(worst_disp, float(np.hypot(pos[0], pos[1])))
        pos[:2] += body.com[:2]
        if worst is None or tilt > worst[0]:
            worst = (tilt, pos, rot @ body.axes.T)
        logger.debug(
            "trial azimuth %.3f rad: tilt %.2f deg after %d steps, stable=%s",
            azimuth, tilt, steps, stable,
        )  # fmt: skip
        trials_run += 1
        if not stable and config.stop_at_first_fall:
            break

    if worst is None:  # unreachable: config.trials >= 1
        raise RuntimeError("no stability trial ran")
    tilt, pos, rot_obj = worst
    quat = Rotation.from_matrix(rot_obj).as_quat()
    return StabilityResult(
        stable=bool(all_stable),
        tilt_deg=float(tilt),
        final_position=(float(pos[0]), float(pos[1]), float(pos[2])),
        final_orientation=(float(quat[0]), float(quat[1]), float(quat[2]), float(quat[3])),
        displacement_m=worst_disp,
        simulated_time_s=total_steps * config.time_step_s,
        trials=trials_run,
    )
