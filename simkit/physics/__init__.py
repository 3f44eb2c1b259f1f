"""Physical plausibility of objects: will it stand?

``support_margin`` is the analytic check for a rigid body resting on flat ground: the
signed distance from its centre of mass's ground projection to its support polygon.
``check_stability`` simulates it (PyBullet, imported lazily) and returns a
``StabilityResult``; ``quasi_static_check`` follows the same nudges analytically
(pivoting on the convex hull, no momentum); ``evaluate`` runs many objects serially, in a process pool or on
Ray, and a failing object only fails itself. The process pool is kept between calls
(``shutdown_pool`` stops it; it is also stopped at exit).
"""

from simkit.physics.files import FileVerdict, assess_files, collect_mesh_files
from simkit.physics.parallel import evaluate, shutdown_pool
from simkit.physics.quasistatic import QuasiStaticResult, quasi_static_check
from simkit.physics.stability import (
    StabilityConfig,
    StabilityResult,
    check_stability,
    collider_parts,
)
from simkit.physics.support import support_margin, voxel_support_margin

__all__ = [
    "FileVerdict",
    "QuasiStaticResult",
    "StabilityConfig",
    "StabilityResult",
    "assess_files",
    "check_stability",
    "collect_mesh_files",
    "collider_parts",
    "evaluate",
    "quasi_static_check",
    "shutdown_pool",
    "support_margin",
    "voxel_support_margin",
]
