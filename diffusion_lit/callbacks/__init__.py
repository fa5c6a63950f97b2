"""Non-essential training logic as Lightning callbacks: EMA, sample grids, strips, loss curve."""
