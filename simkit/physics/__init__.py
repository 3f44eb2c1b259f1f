"""Physical plausibility of objects: will it stand?

``support_margin`` is the analytic check for a rigid body resting on flat ground: the
signed distance from its centre of mass's ground projection to its support polygon.
"""

from simkit.physics.support import support_margin

__all__ = ["support_margin"]
