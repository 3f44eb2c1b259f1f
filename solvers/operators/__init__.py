"""Neural-operator backbones: FNOs (neuraloperator) with basis-function heads."""

from solvers.operators.fno import BasisFNO, BasisFNOConfig, pihcmoe_inputs

__all__ = ["BasisFNO", "BasisFNOConfig", "pihcmoe_inputs"]
