"""task=test: PSNR/SSIM with the original protocols (metrics), over test sets and scales (evaluate), and the side-by-side comparison images (compare)."""
