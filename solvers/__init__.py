"""Neural and numerical PDE solvers built on :mod:`simkit`.

- :mod:`solvers.pdes`: the PDEs (residuals, initial and boundary data, exact solutions);
- :mod:`solvers.numerics`: differentiable reference solvers and PDEBench-layout datasets;
- :mod:`solvers.operators`: FNO backbones with a basis head (PI-HC-MoE's input convention);
- :mod:`solvers.pinns`: Eulerian and Lagrangian physics-informed networks.

Subpackages load on import of their own name (``import solvers.numerics``).
"""

__all__: list[str] = []
