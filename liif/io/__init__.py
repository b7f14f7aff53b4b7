"""Files on disk: durable (atomic) writes, result files, and torch's checkpoint format read and written with NumPy only."""
