"""3D AVAE: orientation-searching Conv3d VAE on voxel grids (EXPERIMENTS.md section 3).

Nothing is imported here so that ``trainables.avae3d.config`` stays torch-free.
"""
