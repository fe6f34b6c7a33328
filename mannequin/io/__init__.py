"""File formats and conversions shared by the stages: camera files (MC/RealEstate10K, TUM), images, ground truth."""
