"""Shared geometry layer: meshes, voxel grids, point clouds, set metrics and rotations.

Everything is torch, on any device; trimesh, open3d and scikit-image are used at the
edges (files, normals, marching cubes).
"""

from simkit.geometry.mesh import MESH_SUFFIXES, MassProperties, Mesh, batch_mass_properties
from simkit.geometry.metrics import (
    SetMetrics,
    coverage,
    minimum_matching_distance,
    one_nn_accuracy,
    pairwise_chamfer,
    pairwise_voxel_chamfer,
    set_metrics,
    upright_symmetries,
)
from simkit.geometry.points import PointCloud, chamfer_distance, farthest_point_sampling
from simkit.geometry.report import ConvertResult, MeshReport, convert_mesh, inspect_mesh
from simkit.geometry.transforms import (
    axis_angle_to_matrix,
    quaternion_to_matrix,
    random_rotations,
    rigid_transform,
)
from simkit.geometry.voxels import VoxelGrid

__all__ = [
    "MESH_SUFFIXES",
    "ConvertResult",
    "MassProperties",
    "Mesh",
    "MeshReport",
    "PointCloud",
    "SetMetrics",
    "VoxelGrid",
    "axis_angle_to_matrix",
    "batch_mass_properties",
    "chamfer_distance",
    "convert_mesh",
    "coverage",
    "farthest_point_sampling",
    "inspect_mesh",
    "minimum_matching_distance",
    "one_nn_accuracy",
    "pairwise_chamfer",
    "pairwise_voxel_chamfer",
    "quaternion_to_matrix",
    "random_rotations",
    "rigid_transform",
    "set_metrics",
    "upright_symmetries",
]
